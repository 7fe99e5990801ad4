"""``cvnet-eval``: retrieval accuracy of a model on a dataset's protocols, and what it means for
decisions.

Prints mAP, Rank-1/5/10 and mINP per protocol (A2G and G2A for cross-view data; VeRi-776 and
VehicleID use their own protocols, VehicleID as the mean +- std of 10 random gallery draws), with
95% bootstrap intervals of mAP and Rank-1 over the vehicles, and the open-set operating points of
each protocol: EER and the TPR at target false-positive rates with the cosine-similarity
threshold that gives each. ``--write-thresholds`` records those thresholds in the model's
sidecar, where ``cvnet-embed`` and ``cvnet-match --threshold auto`` find them; ``--sweep``
re-evaluates with the queries downscaled, motion-blurred or JPEG-compressed; ``--plots`` and
``--dist-out`` write the ROC, score histograms, sweep plot and the distance matrices.

Every model file opens through :func:`cvnet.engines.open_engine`: ``.onnx`` and ``.plan`` files
with ONNX Runtime (or OpenVINO: ``--backend openvino``) and TensorRT, on the host or on the device
(also ``python3 -m cvnet.jetson eval``); a ``.pt`` checkpoint with the PyTorch runner the host
install registers (on CUDA by CUDA-graph replay unless ``--eager``). Device-side: Python 3.6,
never imports torch itself.

Examples::

    cvnet-eval runs/t/model.pt --data data/synth --json-out runs/t/eval.json --visualize ranks.png
    cvnet-eval cvnet.onnx --data data/synth --write-thresholds --plots plots/ --sweep scale
    cvnet-eval cvnet.onnx --data /data/VeRi --format veri
    cvnet-eval cvnet.onnx --data data/synth --backend openvino --precision bf16
"""

import argparse
import contextlib
import json
import logging
import os
import sys
from typing import Any, List, Optional, Sequence

import cv2

from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_batch_size, add_device,
                            add_fpr, add_json_out, add_onnx_runtime, add_seed, add_threads,
                            add_verbose, count, doc_summary, setup_logging)
from cvnet.core.confidence import DEFAULT_RESAMPLES
from cvnet.core.datasets import PROTOCOLS, evaluation_splits, load_dataset, standard_protocols
from cvnet.core.errors import CVNetError
from cvnet.core.evaluation import (EvaluationReport, evaluate, format_report, jsonable,
                                   ranked_lists_image, split_distances)
from cvnet.core.fileio import write_bytes_atomic, write_text_atomic
from cvnet.core.operating_points import DEFAULT_FPRS, pair_scores
from cvnet.core.sweep import format_sweep, parse_kinds, run_sweep
from cvnet.core.runtimes import model_suffix
from cvnet.core.thresholds import model_hash, summary_lines, thresholds_block, write_thresholds

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cvnet-eval", description=doc_summary(__doc__))
    parser.add_argument("model", help="model.pt checkpoint, .onnx file or TensorRT .plan")
    parser.add_argument("--data", required=True,
                        help="dataset: generic CSV (or its folder), VeRi-776 or VehicleID folder")
    parser.add_argument("--format", choices=("auto", "csv", "veri", "vehicleid"), default="auto",
                        help="dataset layout (default: detect)")
    parser.add_argument("--protocol", nargs="+", choices=PROTOCOLS,
                        help="protocols to evaluate (default: the dataset's standard ones)")
    parser.add_argument("--trials", type=int, default=10,
                        help="VehicleID random gallery draws (default 10)")
    parser.add_argument("--test-size", type=int, default=800, choices=(800, 1600, 2400),
                        help="VehicleID test list (default 800)")
    add_batch_size(parser, default=64, help="images per forward pass")
    add_device(parser, choices=("auto", "cpu", "cuda"), default="auto", ordinals=True,
               help="PyTorch device for .pt checkpoints (default auto)")
    add_onnx_runtime(parser, others="; other runtimes run what the file holds")
    add_threads(parser, help="CPU threads of ONNX Runtime, OpenVINO and PyTorch (default: the "
                             "runtime's; for PyTorch the cores other processes leave free, "
                             "docs/threads.md)")
    parser.add_argument("--eager", action="store_true",
                        help=".pt on CUDA: run eager PyTorch instead of replaying CUDA graphs")
    add_json_out(parser, aliases=("--json",), help="also write the metrics as JSON")
    parser.add_argument("--bootstrap", type=count, default=DEFAULT_RESAMPLES, metavar="N",
                        help="resamples of the vehicles for the 95%% intervals of mAP and Rank-1 "
                             "(0: none; VehicleID reports mean +- std over --trials instead; "
                             "default: %(default)s)")
    add_seed(parser, help="seed of the bootstrap, the sweep's degradations and VehicleID's "
                          "gallery draws (default: 0)")
    add_fpr(parser, several=True, default=DEFAULT_FPRS,
            help="false-positive rates of the operating points (default: 1e-2,1e-3,1e-4)")
    parser.add_argument("--write-thresholds", action="store_true",
                        help="record the operating points (threshold per view direction and "
                             "FPR) in the model's sidecar (.onnx.json, .plan.json; model.pt.json "
                             "for a checkpoint), atomically, for cvnet-embed and cvnet-match "
                             "--threshold auto")
    parser.add_argument("--sweep", type=_sweep_kinds, metavar="scale,blur,jpeg",
                        help="also re-evaluate with the queries degraded: scale (shorter side "
                             "256 -> 16 px), blur (motion blur), jpeg (quality 90 -> 5)")
    parser.add_argument("--plots", metavar="DIR",
                        help="write roc.png, scores.png (and sweep.png) there; needs matplotlib")
    parser.add_argument("--dist-out", metavar="FILE.npz",
                        help="write each protocol's distance matrix with query/gallery ids, "
                             "cameras, views and paths (atomically)")
    parser.add_argument("--visualize", metavar="FILE.png",
                        help="write ranked lists (query + top-k, green = right, red = wrong) "
                             "for the first protocol")
    parser.add_argument("--num-queries", type=int, default=8, help="queries in --visualize")
    parser.add_argument("--topk", type=int, default=5, help="matches per query in --visualize")
    add_verbose(parser)
    return parser


def _sweep_kinds(text: str) -> List[str]:
    try:
        return parse_kinds(text)
    except CVNetError as err:
        raise argparse.ArgumentTypeError(str(err))


def describe(runner: Any) -> str:
    """``"cvnet.onnx (onnxruntime, 256x256)"``, with the precision where the runner reports one
    (OpenVINO: ``"cvnet.onnx (openvino, bf16, 256x256)"``)."""
    precision = getattr(runner, "precision", None)
    return "{} ({}{}, {}x{})".format(os.path.basename(runner.path), runner.backend,
                                     ", " + precision if precision else "",
                                     runner.spec.height, runner.spec.width)


def open_model(path: str, stack: contextlib.ExitStack, *, device: str = "auto",
               batch_size: int = 64, eager: bool = False, threads: Optional[int] = None,
               backend: Optional[str] = None, precision: str = "auto") -> Any:
    """Opens a model file with :func:`cvnet.engines.open_engine`; returns the active runner.

    The runner (a PyTorch model, an ONNX Runtime session or a TensorRT engine) is closed by
    ``stack``. A ``.pt`` checkpoint runs batches of up to ``batch_size`` images on ``device``
    (``auto`` is resolved by the host's PyTorch runner), by CUDA-graph replay on a GPU unless
    ``eager``; where no host runner is installed (the device) it is refused, naming the file and
    how to export it. ``backend`` and ``precision`` choose OpenVINO for an ``.onnx`` file
    (:func:`cvnet.engines.backend_options`).
    """
    if not os.path.exists(path):
        raise CVNetError("model file {} does not exist".format(path))
    from cvnet.engines import HOST_SUFFIXES, backend_options, open_engine  # device-safe

    options = backend_options(path, backend=backend, precision=precision, threads=threads)
    if model_suffix(path) in HOST_SUFFIXES:
        options.update(device=device, batch_range=(1, max(1, int(batch_size))))
        if eager:
            options["cuda_graphs"] = False
    return stack.enter_context(open_engine(path, **options))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        with contextlib.ExitStack() as stack:
            report = _run(args, stack)
    except (CVNetError, ValueError) as err:
        logger.error("%s", err)
        return EXIT_ERROR
    print(report)
    return EXIT_OK


def _run(args: argparse.Namespace, stack: contextlib.ExitStack) -> str:
    """Evaluates and writes the requested files; returns the Markdown report."""
    if args.plots:
        from cvnet.jetson.eval_plots import require_matplotlib

        require_matplotlib()  # refused before the evaluation, not after it
    dataset = load_dataset(args.data, None if args.format == "auto" else args.format,
                           test_size=args.test_size)
    runner = open_model(args.model, stack, device=args.device, batch_size=args.batch_size,
                        eager=args.eager, threads=args.threads, backend=args.backend,
                        precision=args.precision)
    protocols = args.protocol or list(standard_protocols(dataset))
    report = evaluate(runner.embed, dataset, protocols, trials=args.trials, seed=args.seed,
                      batch_size=args.batch_size, bootstrap=args.bootstrap,
                      bootstrap_seed=args.seed, fprs=args.fpr)
    text = format_report(report, "{} on {}".format(describe(runner), dataset.source))
    data = jsonable(report)
    sweep = None
    if args.sweep:
        sweep = run_sweep(runner.embed, dataset, protocols, report.embedded, args.sweep,
                          seed=args.seed, batch_size=args.batch_size)
        text += "\n\n" + format_sweep(sweep)
        data["sweep"] = sweep
    if args.write_thresholds:
        data["thresholds_file"] = _write_thresholds(args.model, runner, report, dataset.source)
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(data, indent=2) + "\n")
    if args.dist_out or args.plots:
        splits = {p: evaluation_splits(dataset, p, trials=1, seed=args.seed)[0]
                  for p in protocols}
    if args.dist_out:
        from cvnet.core.distances import write_distances

        write_distances(args.dist_out, splits, report.embedded)
        logger.info("wrote the distance matrices of %s to %s", ", ".join(protocols),
                    args.dist_out)
    if args.plots:
        from cvnet.jetson.eval_plots import write_plots

        pairs = {}
        for protocol in report.operating_points or {}:
            split, distmat = split_distances(splits[protocol], report.embedded)
            pairs[protocol] = pair_scores(distmat, **split.rank_labels())
        written = write_plots(args.plots, pairs, report.operating_points or {}, sweep)
        logger.info("wrote %s", ", ".join(written))
    if args.visualize:
        split = evaluation_splits(dataset, protocols[0], trials=1, seed=args.seed)[0]
        picture = ranked_lists_image(report.embedded, split, num_queries=args.num_queries,
                                     topk=args.topk)
        ok, png = cv2.imencode(".png", picture)
        if not ok:
            raise CVNetError("could not encode the ranked-list picture as PNG")
        write_bytes_atomic(args.visualize, png.tobytes())
        logger.info("wrote %s", args.visualize)
    return text


def _write_thresholds(path: str, runner: Any, report: EvaluationReport, dataset: str) -> str:
    """Records the report's operating points in the model's sidecar; returns its path."""
    block = thresholds_block(report.operating_points or {},
                             model_hash=model_hash(path, runner.metadata), model_file=path,
                             backend=runner.backend, dataset=dataset)
    written = write_thresholds(path, block)
    logger.info("recorded the thresholds in %s:\n  %s", written,
                "\n  ".join(summary_lines(block)))
    return written


if __name__ == "__main__":
    sys.exit(main())
