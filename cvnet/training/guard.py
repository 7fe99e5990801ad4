"""The divergence guard: a run stops at its first non-finite loss, weight or BatchNorm statistic.

A NaN or inf that the loop carries on with spreads into every weight and BatchNorm statistic
within a step or two, and the run then wastes its remaining epochs and ends with useless
checkpoints. Under FP16 the gradient scaler hides the gradients' share of it: a step whose
gradients hold NaN or inf is skipped and the loss scale halved, so with a finite loss and
non-finite gradients at every step the weights stay finite and stop training while the scale
falls towards 0, and the run would end "successfully", untrained. The guard watches without
waiting on the GPU at every step:

- :meth:`DivergenceGuard.observe` (every step) folds "is this loss finite?" into a flag on the
  device and remembers the first step it failed, with no host synchronisation;
- :meth:`DivergenceGuard.check` (every ``check_every`` steps, where the loop reads its loss for
  the progress bar anyway, and always before a checkpoint is written) also tests every
  floating-point parameter and buffer (BatchNorm running statistics included) and every FP16
  gradient scaler's scale against :data:`MIN_LOSS_SCALE` and, before a checkpoint, the
  optimisers' state (momentum, Adam's moments); it reads the flags in one transfer
  (all-reduced over the processes of a distributed run, so every rank stops together) and
  raises :class:`~cvnet.core.errors.DivergenceError` naming the epoch and step and what to
  try.

Example:
    >>> guard = DivergenceGuard(model, steps_per_epoch=40, hint="try --lr 0.03",
    ...                         scalers=[scaler], optimizers=[optimizer])
    >>> for step in ...:
    ...     loss = ...
    ...     guard.observe(epoch, step, loss)
    ...     if step % 10 == 0:
    ...         guard.check(epoch, step)
    >>> guard.check(epoch, step, optimizer_state=True)  # before saving a checkpoint
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
#: The FP16 loss scale below which a run is stopped. GradScaler starts at 2**16, halves the
#: scale at every step whose gradients hold NaN or inf (and skips that step) and doubles it only
#: after 2000 clean steps; a scale below 1 means a step overflowed FP16 (max 65504) even
#: unscaled, which only diverged gradients do, and that at least 17 more steps were skipped
#: than grown since the start. DeepSpeed's dynamic loss scaling stops at the same minimum (its
#: default ``min_loss_scale`` is 1).
MIN_LOSS_SCALE = 1.0
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


def _optimizer_state(module: nn.Module, optimizers: Sequence[torch.optim.Optimizer]):
    """(name, tensor) of every floating-point tensor the optimisers keep, e.g.
    ``"SGD momentum_buffer of 0.weight"``."""
    names = {id(parameter): name for name, parameter in module.named_parameters()}
    for optimizer in optimizers:
        for parameter, state in optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.is_floating_point():
                    yield ("{} {} of {}".format(type(optimizer).__name__, key,
                                                names.get(id(parameter), "a parameter")), value)


def non_finite_optimizer_state(module: nn.Module,
                               optimizers: Sequence[torch.optim.Optimizer]) -> List[str]:
    """Names of the optimisers' state tensors holding NaN or inf (waits for the device)."""
    return [name for name, tensor in _optimizer_state(module, optimizers)
            if not bool(torch.isfinite(tensor).all())]


def _all_finite(tensors, device: torch.device) -> torch.Tensor:
    """A 0-dim bool on ``device``: every tensor of ``(name, tensor)`` pairs is finite."""
    flags = [torch.isfinite(tensor).all().to(device) for _, tensor in tensors]
    if not flags:
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.stack(flags).all()


def _scales(scalers: Sequence["torch.amp.GradScaler"]) -> List[torch.Tensor]:
    """The current scale tensors of the enabled scalers that have scaled a loss yet.

    Read from the scaler's device tensor (``GradScaler._scale``, what ``get_scale`` reads),
    so that testing it costs no transfer of its own.
    """
    return [scaler._scale for scaler in scalers
            if scaler.is_enabled() and getattr(scaler, "_scale", None) is not None]


def _shown(names: Sequence[str]) -> str:
    """Up to :data:`_NAMES_SHOWN` names for a message ("on another process" when none here)."""
    if not names:
        return "on another process"
    more = len(names) - _NAMES_SHOWN
    return ", ".join(names[:_NAMES_SHOWN]) + (" and {} more".format(more) if more > 0 else "")


class DivergenceGuard:
    """Stops a training loop at its first non-finite loss or weight (see the module docstring).

    Args:
        model: The model whose parameters and buffers are checked.
        steps_per_epoch: Steps in one epoch, for the messages.
        hint: What the user may try, appended to the error (flags of the command).
        saved: Called at a failure; returns a sentence on the checkpoints left behind.
        distributed: All-reduce the flags over the process group (every rank must call
            :meth:`check` at the same steps).
        scalers: The run's gradient scalers; an enabled one whose scale falls below
            :data:`MIN_LOSS_SCALE` stops the run (a disabled one, FP32 or BF16, is ignored).
        optimizers: The run's optimisers, whose state ``check(..., optimizer_state=True)``
            tests before a checkpoint.
    """

    def __init__(self, model: nn.Module, *, steps_per_epoch: int, hint: str,
                 saved: Optional[Callable[[], str]] = None, distributed: bool = False,
                 scalers: Sequence["torch.amp.GradScaler"] = (),
                 optimizers: Sequence[torch.optim.Optimizer] = ()):
        device = next(model.parameters()).device
        self.model = model
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.hint = hint
        self.saved = saved
        self.distributed = distributed
        self.scalers = list(scalers)
        self.optimizers = list(optimizers)
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

    def check(self, epoch: int, step: int, *, optimizer_state: bool = False) -> None:
        """Raises when a loss seen so far, a weight or buffer now, or (with ``optimizer_state``)
        the optimisers' state is not finite, or a gradient scaler's scale fell below
        :data:`MIN_LOSS_SCALE`.

        One device-to-host transfer (and one all-reduce in a distributed run); the names in
        the message are read only when something failed.

        Args:
            epoch: Epoch index of the step just done, from 0.
            step: Its step index within the epoch, from 0.
            optimizer_state: Test the optimisers' state too: before writing a checkpoint
                that holds it (a non-finite one is a divergence, not a file error).

        Raises:
            DivergenceError: Naming where it happened, the checkpoints left, and ``hint``.
        """
        device = self._device
        scales = _scales(self.scalers)
        flags = [self._loss_bad, ~_all_finite(_state(self.model), device),
                 torch.stack([(scale < MIN_LOSS_SCALE).any().to(device) for scale in scales]
                             ).any() if scales else torch.zeros((), dtype=torch.bool,
                                                                device=device)]
        if optimizer_state:
            flags.append(~_all_finite(_optimizer_state(self.model, self.optimizers), device))
        bad = torch.stack(flags).long()
        first = torch.where(self._loss_bad, self._first_bad,
                            torch.full_like(self._first_bad, _NEVER))
        if self.distributed:  # every rank stops together, at the earliest bad step
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        values = [int(v) for v in torch.cat([bad, first.view(1)]).tolist()]
        loss_bad, weights_bad, scale_low = values[:3]
        state_bad, first = (values[3] if optimizer_state else 0), values[-1]
        if not (loss_bad or weights_bad or scale_low or state_bad):
            return
        where = self._position(epoch, step)
        if loss_bad:
            what = "the loss became NaN or inf at {}".format(self._position_of(first))
            if first != epoch * self.steps_per_epoch + step:
                what += " (found at the check after {})".format(where)
        elif weights_bad:
            what = ("the weights or BatchNorm statistics became NaN or inf by {} ({})".format(
                where, _shown(non_finite_tensors(self.model))))
        elif scale_low:
            low = [float(scale.min()) for scale in scales if float(scale.min()) < MIN_LOSS_SCALE]
            what = ("the gradients were NaN or inf at so many steps that the FP16 gradient "
                    "scaler, which skips such steps, lowered its loss scale to {} (below {:g}) "
                    "by {}: the weights stopped training though the loss stayed finite".format(
                        "{:g}".format(min(low)) if low else "a value on another process",
                        MIN_LOSS_SCALE, where))
        else:
            what = ("the optimiser state (momentum, Adam moments) became NaN or inf by {} "
                    "({})".format(where, _shown(non_finite_optimizer_state(self.model,
                                                                           self.optimizers))))
        saved = " " + self.saved() if self.saved is not None else ""
        raise DivergenceError("training diverged: {}.{} {}".format(what, saved, self.hint))

    def _position_of(self, global_step: int) -> str:
        epoch, step = divmod(global_step, self.steps_per_epoch)
        return self._position(epoch, step)

    def _position(self, epoch: int, step: int) -> str:
        return "epoch {}, step {} of {}".format(epoch + 1, step + 1, self.steps_per_epoch)
