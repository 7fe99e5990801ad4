"""``cvnet-compare-ops``: the paper's Figure 5 as a command.

Trains the searched op sequence and the uniform strategies (every position None, Exchange, Gate
or Attention) with the same recipe and budget, then prints mAP and Rank-1 per strategy and
protocol. Each strategy trains in its own folder under ``--output``; running the command again
skips finished strategies and resumes an interrupted one.

Examples::

    cvnet-compare-ops --data data/synth --ops runs/search/ops.json --epochs 30 --input-size 64
    cvnet-compare-ops --data data/synth --strategies paper none gate --epochs 30
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from cvnet.core.cli import ArgumentParser, doc_summary
from cvnet.core.errors import ConfigError, CVNetError
from cvnet.core.fileio import write_text_atomic
from cvnet.training.cli import (add_run_arguments, config_from_args, exit_code, run_training,
                                setup_run_logging)
from cvnet.training.config import TrainConfig, config_differences

logger = logging.getLogger(__name__)

#: Strategy name -> op code repeated at every position (Figure 5's uniform bars).
UNIFORM = {"none": "N", "exchange": "E", "gate": "G", "attention": "A"}
STRATEGIES = ("searched", "paper") + tuple(UNIFORM)
SUMMARY_FILE = "comparison.json"
#: Settings that may differ between a finished strategy and this run (they do not change results).
_IRRELEVANT = ("output", "workers", "device", "eval_every")


@dataclass
class CompareConfig(TrainConfig):
    """The training settings every strategy shares; only the default folder differs."""

    output: str = "runs/compare-ops"


def build_parser() -> argparse.ArgumentParser:
    defaults = CompareConfig()
    parser = ArgumentParser(
        prog="cvnet-compare-ops", description=doc_summary(__doc__),
        epilog="Training flags and --config keys are cvnet-train's; every strategy gets the "
               "same ones.")
    add_run_arguments(parser, defaults, resume=False)  # it resumes unfinished strategies itself
    parser.add_argument("--ops", help="the searched sequence: the ops.json cvnet-search wrote, "
                                      "or codes like GAGGGGGNGEAA (needed for 'searched')")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES,
                        help="what to train (default: searched, when --ops is given, then none "
                             "exchange gate attention); 'paper' is the paper's GAGGGGGNGEAA")
    return parser


def strategy_ops(strategies: Sequence[str], searched: Optional[str],
                 positions: int) -> List[Tuple[str, str]]:
    """The op sequence of each strategy.

    Args:
        strategies: Names from :data:`STRATEGIES`.
        searched: The searched sequence (codes), needed for ``searched``.
        positions: Filtration positions of the architecture (12 for the paper's).

    Returns:
        ``[(strategy, ops)]`` in the given order.

    Raises:
        ConfigError: ``searched`` is asked for without a sequence, or a sequence does not fit.
    """
    from cvnet.models.cvnet import paper_ops

    chosen = []
    for name in strategies:
        if name == "searched":
            if not searched:
                raise ConfigError("strategy 'searched' needs --ops (the ops.json cvnet-search "
                                  "wrote)")
            ops = searched
        elif name == "paper":
            ops = "".join(paper_ops(positions // 4))
        else:
            ops = UNIFORM[name] * positions
        if len(ops) != positions:
            raise ConfigError(f"strategy {name}: {len(ops)} ops ({ops}) for an architecture with "
                              f"{positions} filtration positions")
        chosen.append((name, ops))
    return chosen


def compare(base: TrainConfig, strategies: Sequence[Tuple[str, str]]) -> Dict[str, Dict]:
    """Trains each strategy under ``base.output/<strategy>`` and collects its final metrics.

    A strategy whose ``model.pt`` already holds the last epoch is not trained again; one with a
    ``last.pt`` from an earlier, interrupted run resumes from it.

    Raises:
        ConfigError: A strategy's folder holds a finished run with other settings.

    Returns:
        ``{strategy: {"ops": ..., "epoch": ..., "metrics": {protocol: {metric: value}}}}``.
    """
    from cvnet.models.checkpoint import load_checkpoint
    from cvnet.training.trainer import MODEL_FILE, RESUME_FILE

    results = {}
    for name, ops in strategies:
        config = dataclasses.replace(base, output=os.path.join(base.output, name),
                                     model_kwargs={**base.model_kwargs, "ops": ops})
        done = os.path.join(config.output, MODEL_FILE)
        checkpoint = load_checkpoint(done) if os.path.exists(done) else None
        if checkpoint is not None and checkpoint.epoch == config.epochs:
            _check_same_settings(checkpoint.config, config, done)
            logger.info("%s: already trained (%s), not training again", name, done)
        else:
            resume = os.path.exists(os.path.join(config.output, RESUME_FILE))
            logger.info("%s: training %s with ops %s%s", name, config.arch, ops,
                        " (resuming)" if resume else "")
            checkpoint = run_training(config, resume=resume)
        results[name] = {"ops": ops, "epoch": checkpoint.epoch, "metrics": checkpoint.metrics}
        write_text_atomic(os.path.join(base.output, SUMMARY_FILE), json.dumps(results, indent=1))
    return results


def _check_same_settings(saved: Dict, config: TrainConfig, path: str) -> None:
    differ = config_differences(saved, config, ignore=_IRRELEVANT)
    if differ:
        details = "; ".join(differ)
        raise ConfigError(f"{path} was trained with other settings ({details}); compare under "
                          "one budget: use a new --output, or the original flags")


def format_comparison(results: Dict[str, Dict]) -> str:
    """Markdown table: one row per strategy, mAP and Rank-1 (percent) per protocol."""
    protocols = sorted({p for r in results.values() for p in r["metrics"]})
    header = "| strategy | ops | " + " | ".join(f"{p} mAP | {p} Rank-1" for p in protocols) + " |"
    lines = [header, "|---|---|" + "---:|---:|" * len(protocols)]
    for name, result in results.items():
        cells = []
        for protocol in protocols:
            values = result["metrics"].get(protocol, {})
            cells += [f"{100 * values['mAP']:.1f}" if "mAP" in values else "-",
                      f"{100 * values['rank1']:.1f}" if "rank1" in values else "-"]
        lines.append(f"| {name} | {result['ops']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_run_logging(args.verbose)
    try:
        from cvnet.models import build_model, parse_ops

        config = config_from_args(args, cls=CompareConfig)
        searched = "".join(parse_ops(args.ops)) if args.ops else None
        names = args.strategies or ((["searched"] if searched else []) + list(UNIFORM))
        layout = build_model(config.arch, **{**config.model_kwargs, "num_classes": 0})
        positions = len(getattr(layout, "ops", ()))
        if not positions:
            raise ConfigError(f"{config.arch} has no DFC stages; compare the ops of cvnet or a "
                              "variant with DFC stages")
        results = compare(config, strategy_ops(names, searched, positions))
    except CVNetError as err:
        logger.error("%s", err)
        return exit_code(err)
    print(format_comparison(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
