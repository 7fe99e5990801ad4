"""``cvnet-train``: train CVNet (or a variant) on a dataset with the paper's recipe.

Examples::

    cvnet-train --data data/synth --arch cvnet_tiny --epochs 30 --input-size 128 -o runs/t
    cvnet-train --config run.toml --resume
    cvnet-train --data data/synth --ops runs/search/ops.json   # a cvnet-search result
    torchrun --nproc_per_node 2 -m cvnet.training.cli --data ... --device cpu   # DDP (gloo)
"""

import argparse
import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from cvnet.core.cli import (EXIT_ERROR, EXIT_PARTIAL, ArgumentParser, add_batch_size, add_device,
                            add_input_size, add_output, add_seed, add_verbose, doc_summary,
                            setup_logging)
from cvnet.core.datasets import (Dataset, check_images, identity_labels, load_dataset,
                                 standard_protocols)
from cvnet.core.errors import CVNetError, DivergenceError
from cvnet.core.evaluation import EvaluationReport, evaluate, format_report
from cvnet.core.preprocess import PreprocessConfig
from cvnet.training.config import TrainConfig, config_from_mapping, load_config

if TYPE_CHECKING:  # torch-importing; loaded lazily below
    from cvnet.models.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

#: Exit code of the training commands (cvnet-train, cvnet-search, cvnet-compare-ops) when the run
#: was stopped at a non-finite loss or weight: a partial failure (the last good checkpoints are
#: kept); any other error exits 1 (:data:`cvnet.core.cli.EXIT_ERROR`).
EXIT_DIVERGED = EXIT_PARTIAL


def exit_code(err: CVNetError) -> int:
    """The exit code of a training command that failed with ``err``."""
    return EXIT_DIVERGED if isinstance(err, DivergenceError) else EXIT_ERROR


def add_run_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig, *,
                      resume: bool = True) -> None:
    """The flags the training commands share; each flag's dest is its config field.

    Args:
        parser: The command's parser.
        defaults: The command's defaults, quoted in the help.
        resume: Add ``--resume`` (commands that resume on their own leave it out).
    """
    parser.add_argument("--data", help="dataset: generic CSV (or its folder), VeRi-776 or "
                                       "VehicleID folder")
    parser.add_argument("--format", dest="data_format",
                        choices=("auto", "csv", "veri", "vehicleid"),
                        help="dataset layout (default: detect)")
    parser.add_argument("--config",
                        help="TOML file with the config keys (docs/training.md#configuration)")
    add_output(parser, help=f"run folder (default {defaults.output})")
    parser.add_argument("--arch", help=f"registered model name (default {defaults.arch})")
    add_input_size(parser, square=True, dest="img_size", aliases=("--img-size",),
                   help=f"square input size, one number of pixels (default "
                        f"{defaults.img_size}x{defaults.img_size})")
    parser.add_argument("--epochs", type=int, help=f"epochs (default {defaults.epochs})")
    add_batch_size(parser, help=f"images per batch per process, P x K (default "
                                f"{defaults.batch_size})")
    parser.add_argument("--num-instances", type=int,
                        help=f"K: images per identity in a batch "
                             f"(default {defaults.num_instances})")
    parser.add_argument("--lr", type=float, help=f"SGD learning rate (default {defaults.lr})")
    parser.add_argument("--lr-schedule", choices=("step", "cosine"),
                        help="decay after warm-up: step (MSINet's, default) or cosine")
    parser.add_argument("--warmup-epochs", type=int,
                        help=f"linear warm-up epochs (default {defaults.warmup_epochs})")
    parser.add_argument("--pad", type=int,
                        help=f"padding before the random crop, pixels (default {defaults.pad}, "
                             "for 256x256; scale it with --input-size)")
    parser.add_argument("--erase-prob", type=float,
                        help=f"random erasing probability (default {defaults.erase_prob})")
    add_device(parser, choices=("auto", "cpu", "cuda"), help="default auto")
    parser.add_argument("--workers", type=int,
                        help=f"data-loading processes (default {defaults.workers})")
    parser.add_argument("--max-steps-per-epoch", type=int,
                        help="cap iterations per epoch (quick runs; default: full epochs)")
    add_seed(parser, default=None, help="seed of sampling and augmentation (bit-identical CPU "
                                        "runs also need the same OMP_NUM_THREADS=N, "
                                        "docs/threads.md)")
    parser.add_argument("--no-amp", action="store_true",
                        help="train in FP32 on CUDA too (default: mixed precision on CUDA)")
    parser.add_argument("--amp-dtype", choices=("fp16", "bf16"),
                        help=f"mixed-precision dtype on CUDA (default {defaults.amp_dtype}; bf16 "
                             "needs compute capability 8.0+ and no loss scaling)")
    if resume:
        parser.add_argument("--resume", action="store_true",
                            help="continue the interrupted run in --output")
    add_verbose(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cvnet-train", description=doc_summary(__doc__),
        epilog="Defaults are the paper's recipe (350 epochs, SGD lr 0.065, batch 64 = 16 ids x "
               "4 images, 256x256); a --config TOML file may set any of them, and flags given "
               "here override the file. Exit codes: 1 bad input or settings, 2 bad command line, "
               "3 the run diverged (a NaN or inf loss or weight; the last good checkpoints are "
               "kept).")
    add_run_arguments(parser, TrainConfig())
    parser.add_argument("--ops", help="filtration ops of the DFC stages: 12 codes like "
                                      "GAGGGGGNGEAA or the ops.json cvnet-search wrote "
                                      "(default: the arch's own, the paper's searched ops)")
    parser.add_argument("--adam-modules", nargs="+",
                        help="module names trained with Adam (lr 0.002), e.g. filters")
    parser.add_argument("--eval-every", type=int, help="evaluate and save every N epochs")
    parser.add_argument("--protocols", nargs="+",
                        help="protocols evaluated during training (default: the dataset's "
                             "standard ones, A2G and G2A for cross-view data)")
    return parser


def config_from_args(args: argparse.Namespace, cls: type = TrainConfig) -> TrainConfig:
    """Defaults < --config file < flags given on the command line.

    Every parsed flag whose dest is a field of ``cls`` and was given overrides that field.
    """
    config = load_config(args.config, cls=cls) if args.config else cls()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None}
    if getattr(args, "no_amp", False):
        given["amp"] = False
    if getattr(args, "ops", None):
        given["model_kwargs"] = {**config.model_kwargs, "ops": args.ops}
    config = config_from_mapping(given, config, source="command line")
    if not config.data:
        raise CVNetError("no dataset: pass --data PATH (or set data in the --config file)")
    return config


def setup_run_logging(verbose: bool = False) -> None:
    """The training commands' logging: timestamped, and warnings only on ranks other than 0."""
    setup_logging(verbose, timestamps=True, quiet=int(os.environ.get("RANK", "0")) != 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_run_logging(args.verbose)
    try:
        config = config_from_args(args)
        checkpoint = run_training(config, resume=args.resume)
    except CVNetError as err:
        logger.error("%s", err)
        return exit_code(err)
    if checkpoint is not None:
        initial = checkpoint.extra.get("initial_metrics")
        if initial:
            print(format_report(EvaluationReport(initial, [], 0.0),
                                "{} before training".format(config.arch)) + "\n")
        title = "{} after {} epochs: {}".format(config.arch, checkpoint.epoch, checkpoint.path)
        print(format_report(EvaluationReport(checkpoint.metrics, [], 0.0), title))
    return 0


def load_training_set(config: TrainConfig) -> Tuple[Dataset, List[str], List[int]]:
    """Loads ``config.data`` and its training images, leaving out (and counting) unreadable ones.

    Returns:
        The dataset, the readable training image paths and their contiguous identity labels
        0..C-1.

    Raises:
        DatasetError: The dataset cannot be read or has no training split.
    """
    dataset = load_dataset(config.data, None if config.data_format == "auto"
                           else config.data_format)
    train, unreadable = check_images(dataset.split("train"))
    if unreadable:
        logger.warning("leaving out %d unreadable training images", len(unreadable))
    label_of = identity_labels(train)
    return dataset, [r.path for r in train], [label_of[r.vehicle_id] for r in train]


def run_training(config: TrainConfig, resume: bool = False) -> "Optional[Checkpoint]":
    """Loads the dataset, trains, evaluates on its protocols: the whole of ``cvnet-train``.

    Returns:
        The final checkpoint (with ``metrics`` and ``extra["initial_metrics"]``), or None on
        ranks other than 0 of a distributed run.

    Raises:
        CVNetError: Bad dataset, configuration or ops.
    """
    # torch is imported here, after argument parsing, so --help stays fast.
    from cvnet.models.checkpoint import load_checkpoint
    from cvnet.models.device import resolve_device
    from cvnet.models.runner import TorchEmbedder
    from cvnet.training.trainer import fit

    dataset, paths, labels = load_training_set(config)
    protocols = config.protocols or standard_protocols(dataset)
    config = dataclasses.replace(config, protocols=tuple(protocols))
    preprocess = PreprocessConfig(height=config.img_size, width=config.img_size)
    device = str(resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0"))))

    def evaluate_model(model):
        report = evaluate(TorchEmbedder(model, config=preprocess, device=device), dataset,
                          protocols, trials=1, seed=config.seed)
        return report.metrics

    path = fit(config, paths, labels, evaluate=evaluate_model, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return load_checkpoint(path)


if __name__ == "__main__":
    sys.exit(main())
