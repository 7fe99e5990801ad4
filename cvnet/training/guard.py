"""The divergence guard: a run stops at its first non-finite loss, weight or BatchNorm statistic.

A NaN or inf that the loop carries on with spreads into every weight and BatchNorm statistic
within a step or two, and the run then wastes its remaining epochs and ends with useless
checkpoints. The guard watches without waiting on the GPU at every step:

- :meth:`DivergenceGuard.observe` (every step) folds "is this loss finite?" into a flag on the
  device and remembers the first step it failed, with no host synchronisation;
- :meth:`DivergenceGuard.check` (every ``check_every`` steps, where the loop reads its loss for
  the progress bar anyway, and always before a checkpoint is written) also tests every
  floating-point parameter and buffer (BatchNorm running statistics included), reads the flags
  in one transfer (all-reduced over the processes of a distributed run, so every rank stops
  together) and raises :class:`~cvnet.core.errors.DivergenceError` naming the epoch and step and
  what to try.

Example:
    >>> guard = DivergenceGuard(model, steps_per_epoch=40, hint="try --lr 0.03")
    >>> for step in ...:
    ...     loss = ...
    ...     guard.observe(epoch, step, loss)
    ...     if step % 10 == 0:
    ...         guard.check(epoch, step)
"""

import logging
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from cvnet.core.errors import DivergenceError

logger = logging.getLogger(__name__)

#: Steps between two checks of a training loop (each check waits for the GPU once).
CHECK_EVERY = 10
#: Non-finite tensors named in the error, at most.
_NAMES_SHOWN = 6
_NEVER = 2 ** 62  # "no bad step" in the all-reduced minimum


def divergence_hint(*, lr: float, amp: str) -> str:
    """What to try after a divergence, for a command that takes the training flags.

    Args:
        lr: The run's learning rate.
        amp: The run's precision: ``"fp16"``, ``"bf16"`` or ``"fp32"``.
    """
    tries = [f"a lower learning rate (--lr, now {lr:g})"]
    if amp == "fp16":
        tries.append("BF16 mixed precision, which has FP32's range (--amp-dtype bf16, on GPUs "
                     "of compute capability 8.0 or newer)")
    if amp != "fp32":
        tries.append("FP32 (--no-amp)")
    if len(tries) == 1:
        return f"Try {tries[0]}."
    return f"Try {', '.join(tries[:-1])} or {tries[-1]}."


def checkpoints_left(paths: Sequence[str], epoch: Optional[int]) -> str:
    """The sentence on what a stopped run leaves behind.

    Args:
        paths: The run's checkpoint files.
        epoch: The epoch of the last checkpoint written (1-based), None if none was.
    """
    names = " and ".join(paths)
    if epoch is None:
        return f"No checkpoint had been written yet ({names})."
    return (f"{names} still hold epoch {epoch}, the last good state: --resume continues from "
            "there.")


def non_finite_tensors(module: nn.Module) -> List[str]:
    """Names of the floating-point parameters and buffers of ``module`` holding NaN or inf.

    Waits for the device (one read per tensor); call it only when something is known to be
    wrong, or before writing a checkpoint.
    """
    return [name for name, tensor in _state(module) if not bool(torch.isfinite(tensor).all())]


def _state(module: nn.Module):
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if tensor.is_floating_point():
            yield name, tensor


def _all_finite(module: nn.Module, device: torch.device) -> torch.Tensor:
    """A 0-dim bool on ``device``: every floating-point parameter and buffer is finite."""
    flags = [torch.isfinite(tensor).all() for _, tensor in _state(module)]
    if not flags:
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.stack(flags).all()


class DivergenceGuard:
    """Stops a training loop at its first non-finite loss or weight (see the module docstring).

    Args:
        model: The model whose parameters and buffers are checked.
        steps_per_epoch: Steps in one epoch, for the messages.
        hint: What the user may try, appended to the error (flags of the command).
        saved: Called at a failure; returns a sentence on the checkpoints left behind.
        distributed: All-reduce the flags over the process group (every rank must call
            :meth:`check` at the same steps).
    """

    def __init__(self, model: nn.Module, *, steps_per_epoch: int, hint: str,
                 saved: Optional[Callable[[], str]] = None, distributed: bool = False):
        device = next(model.parameters()).device
        self.model = model
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.hint = hint
        self.saved = saved
        self.distributed = distributed
        self._device = device
        self._loss_bad = torch.zeros((), dtype=torch.bool, device=device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)  # global step

    def observe(self, epoch: int, step: int, *losses: torch.Tensor) -> None:
        """Folds the finiteness of this step's losses into the device flag (no synchronisation).

        Args:
            epoch: Epoch index, from 0.
            step: Step index within the epoch, from 0.
            *losses: The step's scalar losses.
        """
        bad = torch.zeros((), dtype=torch.bool, device=self._device)
        for loss in losses:
            bad = bad | ~torch.isfinite(loss.detach()).all()
        first = bad & ~self._loss_bad
        self._first_bad = torch.where(first, epoch * self.steps_per_epoch + step,
                                      self._first_bad)
        self._loss_bad = self._loss_bad | bad

    def check(self, epoch: int, step: int) -> None:
        """Raises when a loss seen so far or a weight or buffer now is not finite.

        One device-to-host transfer (and one all-reduce in a distributed run).

        Args:
            epoch: Epoch index of the step just done, from 0.
            step: Its step index within the epoch, from 0.

        Raises:
            DivergenceError: Naming where it happened, the checkpoints left, and ``hint``.
        """
        bad = torch.stack([self._loss_bad, ~_all_finite(self.model, self._device)]).long()
        first = torch.where(self._loss_bad, self._first_bad,
                            torch.full_like(self._first_bad, _NEVER))
        if self.distributed:  # every rank stops together, at the earliest bad step
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        loss_bad, weights_bad, first = (int(v) for v in torch.cat([bad, first.view(1)]).tolist())
        if not (loss_bad or weights_bad):
            return
        where = self._position(epoch, step)
        if loss_bad:
            what = "the loss became NaN or inf at {}".format(self._position_of(first))
            if first != epoch * self.steps_per_epoch + step:
                what += " (found at the check after {})".format(where)
        else:
            names = non_finite_tensors(self.model)
            shown = ", ".join(names[:_NAMES_SHOWN]) + (
                " and {} more".format(len(names) - _NAMES_SHOWN) if len(names) > _NAMES_SHOWN
                else "")
            what = ("the weights or BatchNorm statistics became NaN or inf by {} ({})".format(
                where, shown or "on another process"))
        saved = " " + self.saved() if self.saved is not None else ""
        raise DivergenceError("training diverged: {}.{} {}".format(what, saved, self.hint))

    def _position_of(self, global_step: int) -> str:
        epoch, step = divmod(global_step, self.steps_per_epoch)
        return self._position(epoch, step)

    def _position(self, epoch: int, step: int) -> str:
        return "epoch {}, step {} of {}".format(epoch + 1, step + 1, self.steps_per_epoch)
