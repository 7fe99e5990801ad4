"""``cvnet-train``: train CVNet (or a variant) on a dataset with the paper's recipe.

Examples::

    cvnet-train --data data/synth --arch cvnet_tiny --epochs 30 --img-size 128 --output runs/t
    cvnet-train --config run.toml --resume
    torchrun --nproc_per_node 2 -m cvnet.training.cli --data ... --device cpu   # DDP (gloo)
"""

import argparse
import dataclasses
import logging
import os
import sys
from typing import Optional, Sequence

from cvnet.datasets import check_images, identity_labels, load_dataset, standard_protocols
from cvnet.errors import CVNetError
from cvnet.evaluation import EvaluationReport, evaluate, format_report
from cvnet.preprocess import PreprocessConfig
from cvnet.training.config import TrainConfig, config_from_mapping, load_config

logger = logging.getLogger(__name__)

# Flags that override the config file; each flag's argparse dest is its TrainConfig field.
_OVERRIDES = ("data", "data_format", "output", "arch", "img_size", "epochs", "batch_size",
              "num_instances", "lr", "lr_schedule", "warmup_epochs", "adam_modules", "device",
              "workers", "eval_every", "protocols", "max_steps_per_epoch", "seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvnet-train", description=__doc__.split("\n\n")[0],
        epilog="Defaults are the paper's recipe (350 epochs, SGD lr 0.065, batch 64 = 16 ids x "
               "4 images, 256x256); a --config TOML file may set any of them, and flags given "
               "here override the file.")
    parser.add_argument("--data", help="dataset: generic CSV (or its folder), VeRi-776 or "
                                       "VehicleID folder")
    parser.add_argument("--format", dest="data_format",
                        choices=("auto", "csv", "veri", "vehicleid"),
                        help="dataset layout (default: detect)")
    parser.add_argument("--config", help="TOML file with TrainConfig keys")
    parser.add_argument("--output", help="run folder for model.pt / last.pt (default runs/cvnet)")
    parser.add_argument("--arch", help="registered model name (default cvnet)")
    parser.add_argument("--img-size", type=int, help="square input size in pixels (default 256)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 350)")
    parser.add_argument("--batch-size", type=int, help="images per batch per process, P x K")
    parser.add_argument("--num-instances", type=int, help="K: images per identity in a batch")
    parser.add_argument("--lr", type=float, help="SGD learning rate (default 0.065)")
    parser.add_argument("--lr-schedule", choices=("step", "cosine"),
                        help="decay after warm-up: step (MSINet's, default) or cosine")
    parser.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs (default 10)")
    parser.add_argument("--adam-modules", nargs="+",
                        help="module names trained with Adam (lr 0.002), e.g. filters")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto")
    parser.add_argument("--workers", type=int, help="data-loading processes (default 2)")
    parser.add_argument("--eval-every", type=int, help="evaluate and save every N epochs")
    parser.add_argument("--protocols", nargs="+",
                        help="protocols evaluated during training (default: the dataset's "
                             "standard ones, A2G and G2A for cross-view data)")
    parser.add_argument("--max-steps-per-epoch", type=int,
                        help="cap iterations per epoch (quick runs; default: full epochs)")
    parser.add_argument("--seed", type=int, help="seed of sampling and augmentation")
    parser.add_argument("--no-amp", action="store_true", help="disable FP16 autocast on CUDA")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --output from its last.pt")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < --config file < flags given on the command line."""
    config = load_config(args.config) if args.config else TrainConfig()
    given = {}
    for flag in _OVERRIDES:
        value = getattr(args, flag)
        if value is not None:
            given[flag] = value
    if args.no_amp:
        given["amp"] = False
    config = config_from_mapping(given, config, source="command line")
    if not config.data:
        raise CVNetError("no dataset: pass --data PATH (or set data in the --config file)")
    return config


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        config = config_from_args(args)
        return _train(config, resume=args.resume)
    except CVNetError as err:
        logger.error("%s", err)
        return 2


def _train(config: TrainConfig, resume: bool) -> int:
    # torch is imported here, after argument parsing, so --help stays fast.
    from cvnet.models.embedder import TorchEmbedder
    from cvnet.training.trainer import fit, resolve_device

    dataset = load_dataset(config.data, None if config.data_format == "auto"
                           else config.data_format)
    train, unreadable = check_images(dataset.split("train"))
    if unreadable:
        logger.warning("training without %d unreadable images", len(unreadable))
    label_of = identity_labels(train)
    protocols = config.protocols or standard_protocols(dataset)
    config = dataclasses.replace(config, protocols=tuple(protocols))
    preprocess = PreprocessConfig(height=config.img_size, width=config.img_size)
    device = str(resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0"))))

    def evaluate_model(model):
        report = evaluate(TorchEmbedder(model, config=preprocess, device=device), dataset,
                          protocols, trials=1, seed=config.seed)
        return report.metrics

    path = fit(config, [r.path for r in train], [label_of[r.vehicle_id] for r in train],
               evaluate=evaluate_model, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        from cvnet.models.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(path)
        initial = checkpoint.extra.get("initial_metrics")
        if initial:
            print(format_report(EvaluationReport(initial, [], 0.0),
                                "{} before training".format(config.arch)) + "\n")
        title = "{} after {} epochs: {}".format(config.arch, checkpoint.epoch, path)
        print(format_report(EvaluationReport(checkpoint.metrics, [], 0.0), title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
