"""The search supernet: CVNet with the search cell (op ``M``) at every filtration position.

Each position holds all four ops of :data:`~cvnet.models.dfc.SEARCH_SPACE` and mixes their
outputs with ``softmax(arch_logits)`` (:class:`~cvnet.models.dfc.FilterMixed`); stem, widths,
LConvs, collaboration and head are those of the CVNet variant it is built from. The
architecture parameters are the ``arch_logits`` of every position (12 x 4 for the paper's
layout); everything else is a network weight.

Example:
    >>> model = build_supernet("cvnet", num_classes=25)
    >>> op_weights(model).shape
    (12, 4)
    >>> derive_ops(model)          # argmax per position
    'NNNNNNNNNNNN'
"""

from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError
from cvnet.models import build_model
from cvnet.models.dfc import MIXED, SEARCH_SPACE, FilterMixed

#: Parameter name of the architecture logits (the last component of their full names).
ARCH_PARAMETER = "arch_logits"


def build_supernet(arch: str = "cvnet", **kwargs) -> nn.Module:
    """Builds the supernet of a CVNet variant: its layout with the search cell everywhere.

    Args:
        arch: A registered CVNet variant with DFC stages (``cvnet``, ``cvnet_tiny``...).
        **kwargs: Constructor options (``num_classes``, ``widths``...); ``ops`` is not allowed,
            the search chooses them.

    Raises:
        ConfigError: ``ops`` was given, or ``arch`` has no DFC stages to search.
    """
    if "ops" in kwargs:
        raise ConfigError("the supernet searches the filtration ops; do not pass ops "
                          f"(got {kwargs['ops']!r})")
    layout = build_model(arch, **{**kwargs, "num_classes": 0})
    positions = len(getattr(layout, "ops", ()))
    if not positions:
        raise ConfigError(f"{arch} has no DFC stages, so no filtration ops to search; use "
                          "cvnet or a variant with DFC stages (cvnet_tiny, cvnet_n2...)")
    return build_model(arch, **kwargs, ops=MIXED * positions)


def mixed_filters(model: nn.Module) -> List[FilterMixed]:
    """The search cells of a supernet, in position order (stage, module, slot)."""
    cells = [module for module in model.modules() if isinstance(module, FilterMixed)]
    if not cells:
        raise ConfigError("the model has no search cells; build it with build_supernet")
    return cells


def arch_parameters(model: nn.Module) -> List[nn.Parameter]:
    """The architecture parameters: one (4,) logit vector per position."""
    return [cell.arch_logits for cell in mixed_filters(model)]


def weight_parameters(model: nn.Module) -> List[nn.Parameter]:
    """Every trainable parameter that is not an architecture parameter."""
    return [p for name, p in model.named_parameters()
            if p.requires_grad and name.split(".")[-1] != ARCH_PARAMETER]


@torch.no_grad()
def op_weights(model: nn.Module) -> np.ndarray:
    """The softmax mixing weights, (positions, 4) float64 in :data:`SEARCH_SPACE` order."""
    return np.stack([cell.weights().double().cpu().numpy() for cell in mixed_filters(model)])


def derive_ops(model: nn.Module) -> str:
    """The searched sequence: the heaviest op at each position, e.g. ``"GAGGGGGNGEAA"``."""
    return weights_to_ops(op_weights(model))


def weights_to_ops(weights: np.ndarray) -> str:
    """Argmax per row of a (positions, 4) weight table -> op codes."""
    return "".join(SEARCH_SPACE[int(i)] for i in np.asarray(weights).argmax(axis=1))


def position_names(count: int) -> List[str]:
    """Readable position names: ``s1.m1.a`` = stage 1, DFC module 1, first filtration slot."""
    return [f"s{i // 4 + 1}.m{i // 2 % 2 + 1}.{'ab'[i % 2]}" for i in range(count)]


def weights_table(weights: np.ndarray) -> Dict[str, Dict[str, float]]:
    """A (positions, 4) weight table as ``{position: {op: weight}}`` for JSON and logs."""
    return {name: {op: round(float(w), 6) for op, w in zip(SEARCH_SPACE, row)}
            for name, row in zip(position_names(len(weights)), weights)}
