"""The deep-shallow filtrate collaboration (DFC) module (paper section 4.3) and its parts.

A DFC module runs a shallow branch (2 LConvs) and a deep branch (6 LConvs, the paper's 3:1 ratio)
side by side. After each half of the LConvs a *filtration op* shared by both branches exchanges
information between them; a *collaboration* module fuses the two branches with per-pixel softmax
weights. The four filtration ops are the paper's NAS search space:

=====  ==========  =====================================================================
code   name        what it does to the pair (deep, shallow)
=====  ==========  =====================================================================
N      none        unchanged
E      exchange    swapped
G      gate        each multiplied by an SE-style channel gate (weights shared by both)
A      attention   channel cross-attention between the branches (DANet CAM style)
M      mixed       the search cell: all four above, mixed with softmax weights over learnable
                   architecture logits (``cvnet-search``'s supernet; not a searched result)
=====  ==========  =====================================================================

An op sequence can also be read from a JSON file (what ``cvnet-search`` writes): pass its path
wherever a sequence is accepted.
"""

import json
import os
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvnet.core.errors import ConfigError
from cvnet.models.layers import ConvBnAct, LightConv, channel_mean_max
from cvnet.models.precision import float32_region, to_dtype, to_float32

Pair = Tuple[torch.Tensor, torch.Tensor]

#: The op sequence the paper's NAS found (Figure 4a): stage i//4, module (i//2)%2, slot i%2.
PAPER_OPS = ("G", "A", "G", "G", "G", "G", "G", "N", "G", "E", "A", "A")
OP_NAMES = {"none": "N", "exchange": "E", "gate": "G", "attention": "A"}
#: The choices at each position, in the column order of the architecture logits.
SEARCH_SPACE = ("N", "E", "G", "A")
#: The search cell's code: every choice at once, softmax-mixed (see :class:`FilterMixed`).
MIXED = "M"
OPS_PER_MODULE = 2
MODULES_PER_STAGE = 2
OPS_PER_STAGE = OPS_PER_MODULE * MODULES_PER_STAGE


def parse_ops(spec: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Normalises an op sequence to a tuple of one-letter codes.

    Args:
        spec: ``"GAGGGGGNGEAA"``, a sequence of codes or names (``["gate", "attention"]``), or
            the path of a JSON file holding one (see :func:`read_ops_file`). ``M`` (the
            search cell) is accepted too.

    Raises:
        ConfigError: An entry is neither a code (N, E, G, A, M) nor a name, or the file cannot
            be read.
    """
    if isinstance(spec, str) and (spec.lower().endswith(".json") or "/" in spec or os.sep in spec):
        return read_ops_file(spec)
    items = list(spec) if isinstance(spec, str) else list(spec)
    codes = []
    for i, item in enumerate(items):
        key = str(item).strip()
        code = OP_NAMES.get(key.lower(), key.upper())
        if code not in SEARCH_SPACE + (MIXED,):
            raise ConfigError(f"filtration op #{i} is {item!r}; expected one of the codes "
                              f"N, E, G, A (or M, the search cell) or the names "
                              f"{', '.join(OP_NAMES)}")
        codes.append(code)
    return tuple(codes)


def read_ops_file(path: str) -> Tuple[str, ...]:
    """Reads an op sequence from JSON: ``{"ops": "GAGG..."}`` (``cvnet-search``'s output) or a
    bare string or list of codes or names.

    Raises:
        ConfigError: The file is missing, not JSON, or holds no valid sequence.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except OSError as err:
        raise ConfigError(f"cannot read the op sequence file {path}: {err.strerror}; pass the "
                          "ops.json that cvnet-search wrote, or a sequence like GAGGGGGNGEAA"
                          ) from None
    except ValueError as err:
        raise ConfigError(f"op sequence file {path} is not valid JSON: {err}") from None
    if isinstance(value, dict):
        value = value.get("ops")
    if not isinstance(value, (str, list)) or not value:
        raise ConfigError(f"op sequence file {path} holds no sequence; expected "
                          '{"ops": "GAGGGGGNGEAA"} or a list of op codes')
    try:
        return parse_ops(value)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


class FilterNone(nn.Module):
    """Filtration op N: returns the pair unchanged."""

    def forward(self, pair: Pair) -> Pair:
        return pair


class FilterExchange(nn.Module):
    """Filtration op E: swaps the two branches."""

    def forward(self, pair: Pair) -> Pair:
        return pair[1], pair[0]


class FilterGate(nn.Module):
    """Filtration op G: an SE-style channel gate whose weights both branches share.

    ``g(X) = sigmoid(W2 ReLU(W1 GAP(X)))`` with 1x1 convs C -> C/r -> C (with bias); each branch
    (B, C, H, W) is multiplied by its own gate (B, C, 1, 1).

    Args:
        channels: Channels C of each branch.
        reduction: Bottleneck ratio r [choice: 16, as MSINet].
    """

    def __init__(self, channels: int, *, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))

    def forward(self, pair: Pair) -> Pair:
        x1, x2 = pair
        return x1 * self.gate(x1), x2 * self.gate(x2)


class FilterAttention(nn.Module):
    """Filtration op A: channel cross-attention between the branches.

    With X1, X2 flattened to (B, C, N), N = H*W: ``E = X1 X2^T`` (B, C, C),
    ``A1 = softmax(rowmax(E) - E)``, ``out1 = gamma * A1 X1 + X1``; branch 2 uses ``E^T``. One
    scalar ``gamma``, initialised to 0, so the op starts as the identity.

    E sums N products (4096 at stage 1 of a 256x256 input): it overflows FP16, and FP16's 11
    significant bits blur the differences its softmax reads. So the op runs in FP32 whatever
    the model runs in (an FP32 island, :mod:`cvnet.models.precision`) and returns the input's
    dtype; ONNX FP16 graphs and engine builds keep these MatMul/Softmax layers in FP32 too.
    """

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, pair: Pair) -> Pair:
        x1, x2 = pair
        with float32_region(x1):
            f1, f2 = to_float32(x1), to_float32(x2)
            q1, q2 = f1.flatten(2), f2.flatten(2)  # (B, C, N) FP32
            energy = torch.bmm(q1, q2.transpose(1, 2))  # (B, C, C)
            out1 = self._attend(energy, q1).view_as(x1)
            out2 = self._attend(energy.transpose(1, 2), q2).view_as(x2)
            gamma = to_float32(self.gamma)
            y1, y2 = gamma * out1 + f1, gamma * out2 + f2
        return to_dtype(y1, x1.dtype), to_dtype(y2, x2.dtype)

    @staticmethod
    def _attend(energy: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
        return torch.bmm(attention, values)


class FilterMixed(nn.Module):
    """Filtration op M, the search cell: every op of :data:`SEARCH_SPACE`, softmax-mixed.

    ``out_b = sum_k softmax(arch_logits)_k * op_k(pair)_b`` for each branch b (a DARTS-style
    continuous relaxation). ``arch_logits`` (4,), zero-initialised so the ops start equally
    weighted, are the architecture parameters ``cvnet-search`` trains with Adam; every other
    parameter here is a network weight.

    The softmax and the mixture run in FP32 (an FP32 island): the gradient of each mixing
    weight sums one product per activation of the cell (millions at stage 1), which FP16
    cannot hold. The outputs have the inputs' dtype.

    Args:
        channels: Channels C of each branch.
        gate_reduction: Bottleneck ratio of the Gate op.
    """

    def __init__(self, channels: int, *, gate_reduction: int = 16):
        super().__init__()
        self.candidates = nn.ModuleList(make_filter(code, channels, gate_reduction=gate_reduction)
                                        for code in SEARCH_SPACE)
        self.arch_logits = nn.Parameter(torch.zeros(len(SEARCH_SPACE)))

    def weights(self) -> torch.Tensor:
        """The mixing weights (4,), in :data:`SEARCH_SPACE` order; they sum to 1."""
        return torch.softmax(self.arch_logits, dim=0)

    def forward(self, pair: Pair) -> Pair:
        outputs = [candidate(pair) for candidate in self.candidates]
        with float32_region(pair[0]):
            weights = to_float32(self.weights())
            mixed = [sum(w * to_float32(out[b]) for w, out in zip(weights, outputs))
                     for b in (0, 1)]
        return to_dtype(mixed[0], pair[0].dtype), to_dtype(mixed[1], pair[1].dtype)


def make_filter(code: str, channels: int, *, gate_reduction: int = 16) -> nn.Module:
    """Builds the filtration op for a one-letter code (see :func:`parse_ops`)."""
    if code == "N":
        return FilterNone()
    if code == "E":
        return FilterExchange()
    if code == "G":
        return FilterGate(channels, reduction=gate_reduction)
    if code == "A":
        return FilterAttention()
    if code == MIXED:
        return FilterMixed(channels, gate_reduction=gate_reduction)
    raise ConfigError(f"unknown filtration op {code!r}; expected one of N, E, G, A, M")


class Collaboration(nn.Module):
    """Fuses deep D and shallow S (each (B, C, H, W)) into Y (B, C, H, W).

    Merge pooling (channel mean and max of each branch) -> (B, 4, H, W) -> k x k conv to 2 maps ->
    softmax over the two -> ``Y = w_D * D + w_S * S``. 394 parameters at k = 7.

    Args:
        kernel_size: The fusion conv's kernel [paper: 7, chosen by cross-validation].
    """

    def __init__(self, *, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(4, 2, kernel_size, padding=kernel_size // 2)

    def forward(self, deep: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([channel_mean_max(deep), channel_mean_max(shallow)], dim=1)
        weights = torch.softmax(self.conv(pooled), dim=1)  # (B, 2, H, W)
        return weights[:, 0:1] * deep + weights[:, 1:2] * shallow


class DFCBlock(nn.Module):
    """One DFC module: (B, in_channels, H, W) -> (B, out_channels, H, W).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        ops: The two filtration op codes (slot 0 after the first LConv group, slot 1 after the
            second).
        mid_ratio: Branch width is ``out_channels // mid_ratio`` [choice: 4, as MSINet].
        deep_lconvs: LConvs per group in the deep branch (3 -> 6 in all, the paper's 3:1).
        shallow_lconvs: LConvs per group in the shallow branch (1 -> 2 in all).
        gate_reduction: Bottleneck ratio of Gate ops.
        collab_kernel: Kernel size of the collaboration conv.
    """

    def __init__(self, in_channels: int, out_channels: int, ops: Sequence[str], *,
                 mid_ratio: int = 4, deep_lconvs: int = 3, shallow_lconvs: int = 1,
                 gate_reduction: int = 16, collab_kernel: int = 7):
        super().__init__()
        if len(ops) != OPS_PER_MODULE:
            raise ConfigError(f"a DFC module takes {OPS_PER_MODULE} filtration ops, "
                              f"got {list(ops)}")
        mid = out_channels // mid_ratio
        self.ops = tuple(ops)
        self.deep_entry = ConvBnAct(in_channels, mid, 1)
        self.shallow_entry = ConvBnAct(in_channels, mid, 1)
        self.deep_groups = nn.ModuleList(
            nn.Sequential(*[LightConv(mid) for _ in range(deep_lconvs)]) for _ in ops)
        self.shallow_groups = nn.ModuleList(
            nn.Sequential(*[LightConv(mid) for _ in range(shallow_lconvs)]) for _ in ops)
        self.filters = nn.ModuleList(make_filter(code, mid, gate_reduction=gate_reduction)
                                     for code in ops)
        self.deep_proj = ConvBnAct(mid, out_channels, 1, act=False)
        self.shallow_proj = ConvBnAct(mid, out_channels, 1, act=False)
        self.collaboration = Collaboration(kernel_size=collab_kernel)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else ConvBnAct(in_channels, out_channels, 1, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep, shallow = self.deep_entry(x), self.shallow_entry(x)  # (B, mid, H, W) each
        for deep_group, shallow_group, filtration in zip(self.deep_groups, self.shallow_groups,
                                                         self.filters):
            deep, shallow = filtration((deep_group(deep), shallow_group(shallow)))
        fused = self.collaboration(self.deep_proj(deep), self.shallow_proj(shallow))
        return self.act(fused + self.shortcut(x))
