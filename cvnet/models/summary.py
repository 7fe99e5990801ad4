"""Parameters per block and GMACs of a registered model, to check the paper's numbers.

Command: ``cvnet-summary [ARCH] [--imgsz 256] [--num-classes K] [--json]`` (also
``python -m cvnet.models.summary``). MACs are counted with PyTorch's own FLOP counter
(``torch.utils.flop_counter``, 1 MAC = 2 FLOPs) on an eval-mode forward of one image; it counts
convolutions and matrix products, not element-wise ops.
"""

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cvnet.models.registry import build_model, list_models, model_description

logger = logging.getLogger(__name__)

#: Paper figures the summary is compared with (section 4.1 and Table 2).
PAPER_PARAMS_M = 4.4
PAPER_MSL_PARAMS_M = 0.09

# Top-level CVNet children that form the head; the BNNeck part of it is train-only.
_HEAD_CHILDREN = ("part_conv", "global_fc", "global_bn", "part_fc", "part_bn")
_TRAIN_ONLY_CHILDREN = ("global_fc", "global_bn", "part_fc", "part_bn", "global_classifier",
                        "part_classifier")


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
        params: All parameters except the ID classifiers (what the paper counts).
        classifier_params: Parameters of the ID classifiers (0 when ``num_classes=0``).
        eval_params: Parameters an eval-mode forward (and so the ONNX graph) uses.
        gmacs: Total multiply-accumulates of one eval-mode forward, in 1e9.
        embedding_dim: Length of the eval-mode output.
    """

    arch: str
    input_size: Sequence[int]
    rows: List[BlockRow]
    params: int
    classifier_params: int
    eval_params: int
    gmacs: float
    embedding_dim: int


def _block_path(path: str) -> str:
    """The block a module or parameter path belongs to: ``"stages.0.1.x"`` -> ``"stages.0"``."""
    parts = path.split(".")
    return ".".join(parts[:2] if parts[0] in ("stages", "transitions") else parts[:1])


def _block_label(block_path: str) -> str:
    parts = block_path.split(".")
    if parts[0] == "stages":
        return f"stage {int(parts[1]) + 1}"
    if parts[0] == "transitions":
        return f"transition {int(parts[1]) + 1}"
    if parts[0] in _HEAD_CHILDREN:
        return "head"
    if parts[0].endswith("classifier"):
        return "classifiers"
    return parts[0]


def _forward_order(row: BlockRow) -> tuple:
    """Sort key: stem, stage 1, transition 1, stage 2, ..., other blocks, head, classifiers."""
    kind, _, number = row.block.partition(" ")
    if kind in ("stage", "transition"):
        return (1, int(number), kind == "transition")
    rank = {"stem": 0, "head": 3, "classifiers": 4}.get(row.block, 2)
    return (rank, 0, False)


def count_macs(model: nn.Module, input_size: Sequence[int]) -> Dict[str, int]:
    """Counts MACs of one eval-mode forward of a single image, per top-level module path.

    Args:
        model: The model; its train/eval mode is restored afterwards.
        input_size: (channels, height, width).

    Returns:
        Module path relative to the model (``""`` for the whole model, ``"stages.0"``...) ->
        MACs for one image.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    root = type(model).__name__
    macs = {}
    for path, by_op in counter.get_flop_counts().items():
        if path == root or path.startswith(root + "."):
            macs[path[len(root) + 1:]] = sum(by_op.values()) // 2
    return macs


def summarize(arch: str, *, input_size: Sequence[int] = (3, 256, 256), **model_kwargs) -> ModelSummary:
    """Builds a registered model and counts its parameters per block and its MACs.

    Args:
        arch: Registered model name (see :func:`cvnet.models.list_models`).
        input_size: (channels, height, width) for the MAC count.
        **model_kwargs: Constructor options, e.g. ``num_classes``.
    """
    model = build_model(arch, **model_kwargs)
    macs = count_macs(model, input_size)

    rows: Dict[str, BlockRow] = {}
    for name, param in model.named_parameters():
        label = _block_label(_block_path(name))
        rows.setdefault(label, BlockRow(label, 0, 0.0)).params += param.numel()
    for path, count in macs.items():
        if path and _block_path(path) == path:  # count each block once, not its sub-modules
            label = _block_label(path)
            rows.setdefault(label, BlockRow(label, 0, 0.0)).gmacs += count / 1e9

    classifier_params = rows["classifiers"].params if "classifiers" in rows else 0
    train_only = sum(p.numel() for n, p in model.named_parameters()
                     if n.split(".")[0] in _TRAIN_ONLY_CHILDREN)
    total = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        embedding_dim = model.eval()(torch.zeros(1, *input_size)).shape[1]
    return ModelSummary(
        arch=arch,
        input_size=tuple(input_size),
        rows=sorted(rows.values(), key=_forward_order),
        params=total - classifier_params,
        classifier_params=classifier_params,
        eval_params=total - train_only,
        gmacs=macs.get("", 0) / 1e9,
        embedding_dim=int(embedding_dim),
    )


def format_summary(summary: ModelSummary) -> str:
    """Renders a summary as a Markdown table followed by totals and the paper's figures."""
    c, h, w = summary.input_size
    lines = [f"## {summary.arch} at {c}x{h}x{w}", "",
             "| block | params (M) | GMACs |", "|---|---:|---:|"]
    for row in summary.rows:
        lines.append(f"| {row.block} | {row.params / 1e6:.3f} | {row.gmacs:.3f} |")
    stem = next((r.params for r in summary.rows if r.block == "stem"), 0)
    lines += [
        f"| **total without classifiers** | **{summary.params / 1e6:.3f}** | "
        f"**{summary.gmacs:.3f}** |",
        "",
        f"- parameters without ID classifiers: {summary.params:,} "
        f"(paper: {PAPER_PARAMS_M}M); stem: {stem:,} (paper's MSL: {PAPER_MSL_PARAMS_M}M)",
        f"- ID classifiers: {summary.classifier_params:,}",
        f"- used by the eval-mode forward / exported graph: {summary.eval_params:,} "
        "(the BNNeck linears and classifiers are train-only)",
        f"- GMACs per image: {summary.gmacs:.3f}; embedding: {summary.embedding_dim}-d",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvnet-summary",
        description="Print parameters per block and GMACs of a CVNet variant.")
    parser.add_argument("arch", nargs="?", default="cvnet",
                        help="registered model name (default: cvnet); --list shows them")
    parser.add_argument("--imgsz", type=int, default=256,
                        help="square input size in pixels for the MAC count (default: 256)")
    parser.add_argument("--num-classes", type=int, default=0,
                        help="training identities; adds ID classifiers (default: 0, none)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--list", action="store_true", help="list the registered models and exit")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        print("\n".join(f"{name:22s} {model_description(name)}" for name in list_models()))
        return 0
    try:
        summary = summarize(args.arch, input_size=(3, args.imgsz, args.imgsz),
                            num_classes=args.num_classes)
    except (KeyError, ValueError) as err:
        logger.error("%s", err.args[0] if err.args else err)
        return 2
    print(json.dumps(asdict(summary), indent=2) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
