"""Optimisers and learning-rate schedule of the paper's recipe (section 5.1).

SGD (lr 0.065, momentum 0.9, weight decay 5e-4) for the network; optionally Adam (lr 0.002) for
modules the user names (the paper's "Adam for specific components"; with a fixed op sequence
there are no architecture parameters, so it is off by default). Both follow a per-iteration
schedule: linear warm-up over the first epochs, then MSINet's step decay (x0.1 at epochs 150,
225 and 300 of 350, i.e. at the same fractions of any run's length) or, optionally, cosine decay.
"""

import bisect
import math
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR

from cvnet.core.errors import ConfigError


def warmup_cosine_factor(step: int, *, total_steps: int, warmup_steps: int,
                         min_ratio: float = 0.01) -> float:
    """Learning-rate multiplier at an iteration.

    Linear from ``min_ratio`` to 1 over ``warmup_steps``, then cosine from 1 down to
    ``min_ratio`` at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return min_ratio + (1.0 - min_ratio) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


#: MSINet's decay epochs (150, 225, 300 of 350) as fractions of the run.
MSINET_MILESTONES = (150 / 350, 225 / 350, 300 / 350)
SCHEDULES = ("step", "cosine")


def warmup_step_factor(step: int, *, total_steps: int, warmup_steps: int,
                       milestones: Sequence[float] = MSINET_MILESTONES, gamma: float = 0.1,
                       min_ratio: float = 0.01) -> float:
    """Learning-rate multiplier of MSINet's schedule at an iteration.

    Linear from ``min_ratio`` to 1 over ``warmup_steps``, then multiplied by ``gamma`` at each
    milestone (fractions of ``total_steps``) passed.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return min_ratio + (1.0 - min_ratio) * step / warmup_steps
    passed = bisect.bisect_right(sorted(round(m * total_steps) for m in milestones), step)
    return gamma ** passed


def _matches(parameter_name: str, module_names: Sequence[str]) -> bool:
    components = parameter_name.split(".")
    return any(name in components for name in module_names)


class Optimizers:
    """One or two optimisers (SGD, and Adam for named modules), each with its schedule.

    Args:
        model: The model to train.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: Weight decay of both optimisers.
        adam_modules: Module names (attribute names anywhere in the model, e.g. ``filters``,
            ``collaboration``) whose parameters Adam trains instead of SGD.
        adam_lr: Adam learning rate.
        total_steps: Iterations of the whole run, for the schedule.
        warmup_steps: Iterations of linear warm-up.
        min_lr_ratio: Learning rate at the start of warm-up (and the end of cosine decay), as a
            fraction of the base rate.
        schedule: ``"step"`` (MSINet's, the default) or ``"cosine"``.
        exclude: Parameter names (components, like ``adam_modules``) neither optimiser
            trains, e.g. ``arch_logits``, which ``cvnet-search`` gives to its own optimiser.
    """

    def __init__(self, model: nn.Module, *, lr: float = 0.065, momentum: float = 0.9,
                 weight_decay: float = 5e-4, adam_modules: Sequence[str] = (),
                 adam_lr: float = 0.002, total_steps: int, warmup_steps: int,
                 min_lr_ratio: float = 0.01, schedule: str = "step",
                 exclude: Sequence[str] = ()):
        if schedule not in SCHEDULES:
            raise ConfigError(f"lr schedule must be one of {', '.join(SCHEDULES)}, "
                              f"got {schedule!r}")
        trainable = [(n, p) for n, p in model.named_parameters()
                     if p.requires_grad and not _matches(n, exclude)]
        adam_params = [p for n, p in trainable if _matches(n, adam_modules)]
        sgd_params = [p for n, p in trainable if not _matches(n, adam_modules)]
        unknown = [name for name in adam_modules
                   if not any(_matches(n, [name]) for n, _ in trainable)]
        if unknown:
            raise ConfigError(f"--adam-modules names no trainable module: {', '.join(unknown)}; "
                              "use attribute names from the model, e.g. filters, collaboration")
        self.optimizers: List[torch.optim.Optimizer] = [
            torch.optim.SGD(sgd_params, lr=lr, momentum=momentum, weight_decay=weight_decay)]
        if adam_params:
            self.optimizers.append(torch.optim.Adam(adam_params, lr=adam_lr,
                                                    weight_decay=weight_decay))

        def factor(step: int) -> float:
            if schedule == "cosine":
                return warmup_cosine_factor(step, total_steps=total_steps,
                                            warmup_steps=warmup_steps, min_ratio=min_lr_ratio)
            return warmup_step_factor(step, total_steps=total_steps, warmup_steps=warmup_steps,
                                      min_ratio=min_lr_ratio)

        self.schedulers = [LambdaLR(opt, factor) for opt in self.optimizers]

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def step(self, scaler: "torch.amp.GradScaler" = None) -> None:
        """Steps every optimiser (through the AMP scaler when given) and every schedule."""
        for optimizer in self.optimizers:
            if scaler is not None:
                scaler.step(optimizer)
            else:
                optimizer.step()
        for scheduler in self.schedulers:
            scheduler.step()

    def learning_rates(self) -> List[float]:
        return [optimizer.param_groups[0]["lr"] for optimizer in self.optimizers]

    def state_dict(self) -> Dict[str, list]:
        return {"optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: Dict[str, list]) -> None:
        if len(state["optimizers"]) != len(self.optimizers):
            raise ConfigError("the checkpoint's optimiser state does not match this run's "
                              "(--adam-modules differs); resume with the original settings")
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
