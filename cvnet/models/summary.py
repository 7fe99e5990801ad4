"""Parameters per block and GMACs of a registered model, to check the paper's numbers.

Command: ``cvnet-summary [ARCH] [--input-size 256] [--num-classes K] [--json]`` (also
``python -m cvnet.models.summary``; the command line is :mod:`cvnet.models.summary_cli`). MACs are
counted with PyTorch's own FLOP counter (``torch.utils.flop_counter``, 1 MAC = 2 FLOPs) on an
eval-mode forward of one image; it counts convolutions and matrix products, not element-wise ops.

Blocks are a model's top-level children, with ``stages.i`` and ``transitions.i`` split into
"stage i+1" and "transition i+1"; CVNet's head children are merged into "head", and every
parameter under a module whose name contains ``classifier`` is reported as "classifiers". The
parameters an eval-mode forward uses are found by hooking every module during that forward, so
train-only parts (BNNeck linears, classifiers) are recognised in any model.
"""

import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cvnet.models.baselines import TABLE2_PARAMS_M
from cvnet.models.registry import build_model

#: Paper figures the summary is compared with (section 4.1 and Table 2).
PAPER_PARAMS_M = 4.4
PAPER_MSL_PARAMS_M = 0.09

# Top-level CVNet children that form its head.
_HEAD_CHILDREN = ("part_conv", "global_fc", "global_bn", "part_fc", "part_bn")


@dataclass
class BlockRow:
    """One row of the summary: a block, its parameters and its multiply-accumulates."""

    block: str
    params: int
    gmacs: float


@dataclass
class ModelSummary:
    """Parameter and MAC counts of a model at one input size.

    Attributes:
        arch: Registered model name.
        input_size: (channels, height, width) of the image the MACs were counted at.
        rows: Per-block counts, in forward order; ``"classifiers"`` is last when present.
        params: All parameters except the ID classifiers (what the paper counts for CVNet).
        classifier_params: Parameters of the ID classifiers (0 when ``num_classes=0``).
        eval_params: Parameters an eval-mode forward (and so the ONNX graph) uses.
        gmacs: Total multiply-accumulates of one eval-mode forward, in 1e9.
        embedding_dim: Length of the eval-mode output.
        paper_params_m: The paper's count in millions (Table 2 for the baselines, which counts
            their classifiers; 4.4 without classifiers for CVNet), ``None`` if it gives none.
    """

    arch: str
    input_size: Sequence[int]
    rows: List[BlockRow]
    params: int
    classifier_params: int
    eval_params: int
    gmacs: float
    embedding_dim: int
    paper_params_m: Optional[float] = None


def _block_path(path: str) -> str:
    """The block a module or parameter path belongs to: ``"stages.0.1.x"`` -> ``"stages.0"``."""
    parts = path.split(".")
    return ".".join(parts[:2] if parts[0] in ("stages", "transitions") else parts[:1])


def is_classifier(path: str) -> bool:
    """Whether a module or parameter path belongs to an ID classifier (a part names one)."""
    return any("classifier" in part for part in path.split("."))


def param_count(model: nn.Module) -> int:
    """Parameters without the ID classifiers: what the paper counts and the sidecar records."""
    return sum(p.numel() for name, p in model.named_parameters() if not is_classifier(name))


def _block_label(path: str) -> str:
    """The row a module or parameter path is reported in: ``"stages.0.1.x"`` -> ``"stage 1"``."""
    parts = path.split(".")
    if is_classifier(path):
        return "classifiers"
    if parts[0] == "stages":
        return f"stage {int(parts[1]) + 1}"
    if parts[0] == "transitions":
        return f"transition {int(parts[1]) + 1}"
    if parts[0] in _HEAD_CHILDREN:
        return "head"
    return parts[0]


def _block_macs(macs: Dict[str, int], block: str) -> int:
    """MACs of a block; one that is never called itself (a ModuleList) sums its called children."""
    if block in macs:
        return macs[block]
    inside = [path for path in macs if path.startswith(block + ".")]
    outermost = [p for p in inside if not any(p.startswith(q + ".") for q in inside)]
    return sum(macs[p] for p in outermost)


def _forward_order(row: BlockRow) -> tuple:
    """Sort key: stem, stage 1, transition 1, stage 2, ..., other blocks, head, classifiers."""
    kind, _, number = row.block.partition(" ")
    if kind in ("stage", "transition"):
        return (1, int(number), kind == "transition")
    rank = {"stem": 0, "head": 3, "classifiers": 4}.get(row.block, 2)
    return (rank, 0, False)


def _profile(model: nn.Module,
             input_size: Sequence[int]) -> Tuple[Dict[str, int], Set[str], torch.Tensor]:
    """Runs one eval-mode forward of a zero image under the FLOP counter and module hooks.

    Returns:
        MACs per module path (``""`` for the whole model), the paths of the modules the forward
        called, and the output. The model's train/eval mode is restored afterwards.
    """
    called: Set[str] = set()
    handles = [module.register_forward_pre_hook(lambda *_, path=path: called.add(path))
               for path, module in model.named_modules()]
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            output = model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    root = type(model).__name__
    macs = {}
    for path, by_op in counter.get_flop_counts().items():
        if path == root or path.startswith(root + "."):
            macs[path[len(root) + 1:]] = sum(by_op.values()) // 2
    return macs, called, output


def count_macs(model: nn.Module, input_size: Sequence[int]) -> Dict[str, int]:
    """Counts MACs of one eval-mode forward of a single image, per module path.

    Args:
        model: The model; its train/eval mode is restored afterwards.
        input_size: (channels, height, width).

    Returns:
        Module path relative to the model (``""`` for the whole model, ``"stages.0"``...) ->
        MACs for one image.
    """
    return _profile(model, input_size)[0]


def _paper_params_m(arch: str) -> Optional[float]:
    if arch in TABLE2_PARAMS_M:
        return TABLE2_PARAMS_M[arch]
    return PAPER_PARAMS_M if arch.startswith("cvnet") else None


def summarize(arch: str, *, input_size: Sequence[int] = (3, 256, 256), **model_kwargs) -> ModelSummary:
    """Builds a registered model and counts its parameters per block and its MACs.

    Args:
        arch: Registered model name (see :func:`cvnet.models.list_models`).
        input_size: (channels, height, width) for the MAC count.
        **model_kwargs: Constructor options, e.g. ``num_classes``.
    """
    model = build_model(arch, **model_kwargs)
    macs, called, output = _profile(model, input_size)

    rows: Dict[str, BlockRow] = {}
    eval_params = 0
    for module_path, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            label = _block_label(f"{module_path}.{name}" if module_path else name)
            rows.setdefault(label, BlockRow(label, 0, 0.0)).params += param.numel()
            eval_params += param.numel() if module_path in called else 0
    for block in dict.fromkeys(_block_path(path) for path in macs if path):
        label = _block_label(block)
        rows.setdefault(label, BlockRow(label, 0, 0.0)).gmacs += _block_macs(macs, block) / 1e9

    classifier_params = rows["classifiers"].params if "classifiers" in rows else 0
    total = sum(p.numel() for p in model.parameters())
    return ModelSummary(
        arch=arch,
        input_size=tuple(input_size),
        rows=sorted(rows.values(), key=_forward_order),
        params=total - classifier_params,
        classifier_params=classifier_params,
        eval_params=eval_params,
        gmacs=macs.get("", 0) / 1e9,
        embedding_dim=int(output.shape[1]),
        paper_params_m=_paper_params_m(arch),
    )


def format_summary(summary: ModelSummary) -> str:
    """Renders a summary as a Markdown table followed by totals and the paper's figures."""
    c, h, w = summary.input_size
    lines = [f"## {summary.arch} at {c}x{h}x{w}", "",
             "| block | params (M) | GMACs |", "|---|---:|---:|"]
    for row in summary.rows:
        lines.append(f"| {row.block} | {row.params / 1e6:.3f} | {row.gmacs:.3f} |")
    lines += [
        f"| **total without classifiers** | **{summary.params / 1e6:.3f}** | "
        f"**{summary.gmacs:.3f}** |",
        "",
    ]
    if summary.arch in TABLE2_PARAMS_M:
        total = summary.params + summary.classifier_params
        change = 100.0 * (total / (summary.paper_params_m * 1e6) - 1.0)
        lines.append(f"- parameters without ID classifiers: {summary.params:,}; with them: "
                     f"{total:,} (paper, Table 2, counting the classifiers: "
                     f"{summary.paper_params_m}M; {change:+.1f}%)")
    elif summary.paper_params_m is not None:
        stem = next((r.params for r in summary.rows if r.block == "stem"), 0)
        lines.append(f"- parameters without ID classifiers: {summary.params:,} "
                     f"(paper: {summary.paper_params_m}M); stem: {stem:,} "
                     f"(paper's MSL: {PAPER_MSL_PARAMS_M}M)")
    else:
        lines.append(f"- parameters without ID classifiers: {summary.params:,}")
    lines += [
        f"- ID classifiers: {summary.classifier_params:,}",
        f"- used by the eval-mode forward / exported graph: {summary.eval_params:,} "
        "(train-only parts such as BNNeck linears and classifiers excluded)",
        f"- GMACs per image: {summary.gmacs:.3f}; embedding: {summary.embedding_dim}-d",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    from cvnet.models.summary_cli import main

    sys.exit(main())
