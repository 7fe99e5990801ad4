"""``cvnet-eval``: retrieval accuracy of a model on a dataset's protocols.

Prints mAP, Rank-1/5/10 and mINP per protocol (A2G and G2A for cross-view data; VeRi-776 and
VehicleID use their own protocols, VehicleID as the mean +- std of 10 random gallery draws).
Every model file opens through :func:`cvnet.engines.open_engine`: ``.onnx`` and ``.plan`` files
with ONNX Runtime (or OpenVINO: ``--backend openvino``) and TensorRT, on the host or on the device
(also ``python3 -m cvnet.jetson eval``); a ``.pt`` checkpoint with the PyTorch runner the host
install registers (on CUDA by CUDA-graph replay unless ``--eager``). Device-side: Python 3.6,
never imports torch itself.

Examples::

    cvnet-eval runs/t/model.pt --data data/synth --json-out runs/t/eval.json --visualize ranks.png
    cvnet-eval cvnet.onnx --data /data/VeRi --format veri
    cvnet-eval cvnet.onnx --data data/synth --backend openvino --precision bf16
"""

import argparse
import contextlib
import json
import logging
import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import cv2

from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_batch_size, add_device,
                            add_json_out, add_onnx_runtime, add_threads, add_verbose,
                            doc_summary, setup_logging)
from cvnet.core.datasets import PROTOCOLS, evaluation_splits, load_dataset, standard_protocols
from cvnet.core.errors import CVNetError
from cvnet.core.evaluation import Embedder, evaluate, format_report, jsonable, ranked_lists_image
from cvnet.core.fileio import write_bytes_atomic, write_text_atomic

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
    add_device(parser, choices=("auto", "cpu", "cuda"), default="auto",
               help="PyTorch device for .pt checkpoints (default auto)")
    add_onnx_runtime(parser, others="; other runtimes run what the file holds")
    add_threads(parser, help="CPU threads of ONNX Runtime, OpenVINO and PyTorch (default: the "
                             "runtime's; for PyTorch the cores other processes leave free, "
                             "docs/threads.md)")
    parser.add_argument("--eager", action="store_true",
                        help=".pt on CUDA: run eager PyTorch instead of replaying CUDA graphs")
    add_json_out(parser, aliases=("--json",), help="also write the metrics as JSON")
    parser.add_argument("--visualize", metavar="FILE.png",
                        help="write ranked lists (query + top-k, green = right, red = wrong) "
                             "for the first protocol")
    parser.add_argument("--num-queries", type=int, default=8, help="queries in --visualize")
    parser.add_argument("--topk", type=int, default=5, help="matches per query in --visualize")
    add_verbose(parser)
    return parser


def embedder_from_path(path: str, stack: contextlib.ExitStack, *, device: str = "auto",
                       batch_size: int = 64, eager: bool = False,
                       threads: Optional[int] = None, backend: Optional[str] = None,
                       precision: str = "auto") -> Tuple[Embedder, str]:
    """Opens a model file with :func:`cvnet.engines.open_engine`; returns its embedder and a
    description.

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

    options = backend_options(path, backend=backend, precision=precision,
                              threads=threads)  # type: Dict[str, Any]
    if os.path.splitext(path)[1].lower() in HOST_SUFFIXES:
        options.update(device=device, batch_range=(1, max(1, int(batch_size))))
        if eager:
            options["cuda_graphs"] = False
    runner = stack.enter_context(open_engine(path, **options))
    spec = runner.spec
    precision_note = (", " + runner.precision) if getattr(runner, "precision", None) else ""
    return runner.embed, "{} ({}{}, {}x{})".format(os.path.basename(path), runner.backend,
                                                   precision_note, spec.height, spec.width)


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
    dataset = load_dataset(args.data, None if args.format == "auto" else args.format,
                           test_size=args.test_size)
    embed, description = embedder_from_path(args.model, stack, device=args.device,
                                            batch_size=args.batch_size, eager=args.eager,
                                            threads=args.threads, backend=args.backend,
                                            precision=args.precision)
    protocols = args.protocol or list(standard_protocols(dataset))
    report = evaluate(embed, dataset, protocols, trials=args.trials,
                      batch_size=args.batch_size)
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(jsonable(report), indent=2) + "\n")
    if args.visualize:
        split = evaluation_splits(dataset, protocols[0], trials=1)[0]
        picture = ranked_lists_image(report.embedded, split, num_queries=args.num_queries,
                                     topk=args.topk)
        ok, png = cv2.imencode(".png", picture)
        if not ok:
            raise CVNetError("could not encode the ranked-list picture as PNG")
        write_bytes_atomic(args.visualize, png.tobytes())
        logger.info("wrote %s", args.visualize)
    return format_report(report, "{} on {}".format(description, dataset.source))


if __name__ == "__main__":
    sys.exit(main())
