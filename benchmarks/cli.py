"""``cvnet-bench``: FPS, latency and parameters of CVNet (and the Table 2 baselines) on this
machine, printed beside the paper's Table 2.

Without ``--engine`` (host): the untrained paper CVNet is exported once into a cache folder and
timed with PyTorch eager, ONNX Runtime and, where it is installed, OpenVINO at fp32 and bf16.
With ``--engine cvnet.plan`` / ``cvnet.onnx`` (device: Python 3.6, no torch) that file is timed
with its backend (an ``.onnx`` also with OpenVINO where it is installed). Every CPU row carries
its agreement with the FP32 reference on the verification images (cosine, top-5 agreement), and
the report ends with the fastest CPU path that keeps the rankings. The Markdown report goes to
stdout; ``--json-out``, ``--csv`` and ``--plot`` write files. ``--target-fps 30`` adds the
crops-per-frame plan (:mod:`cvnet.benchmarks.planner`). Exit status: 0 measured, 1 error (a
refused model, option or combination), 2 bad command line.
"""

import argparse
import datetime
import logging
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from cvnet.benchmarks.paper import baseline_archs, load_table2
from cvnet.benchmarks.rounds import batch_sizes
from cvnet.benchmarks.report import build_report, markdown_report, write_csv, write_json, write_plot
from cvnet.benchmarks.agreement import DEFAULT_IMAGES, REFERENCE_NAMES, Agreement
from cvnet.benchmarks.run import (BACKENDS, BenchError, Target, default_targets, engine_targets,
                                  measure, openvino_installed, runner_options)
from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_backend, add_device,
                            add_engine, add_input_size, add_json_out, add_precision, add_threads,
                            add_verbose, add_verification, doc_summary, setup_logging)
from cvnet.core.errors import CVNetError
from cvnet.core.cpu import load_average, physical_cores, usable_cpus
from cvnet.core.plugins import BENCH, PluginError, load_plugin
from cvnet.core.preprocess import DEFAULT_SIZE
from cvnet.engines.machine import overload_warning, probe_machine

logger = logging.getLogger(__name__)

DEFAULT_BATCHES = (1, 8)
DEFAULT_BACKENDS = ("torch", "onnxruntime")


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError("expected a frame rate > 0 such as 30, got {!r}".format(
            text))
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cvnet-bench", description=doc_summary(__doc__))
    add_engine(parser, help="model file to time: .plan (TensorRT), .onnx (ONNX Runtime, and "
                            "OpenVINO where installed) or .pt (PyTorch, host install only); "
                            "default: export the untrained paper CVNet and time it (host install "
                            "only: on a device, pass a .plan or .onnx)")
    add_backend(parser, choices=tuple(BACKENDS), several=True,
                help="backend(s), comma-separated; default: torch,onnxruntime (plus openvino "
                     "on the CPU where it is installed), or the ones that open --engine. torch "
                     "on a GPU replays CUDA graphs (channels-last, cuDNN autotuning); "
                     "torch-eager is plain eager PyTorch. A run without onnxruntime or "
                     "openvino exports nothing")
    add_device(parser, choices=("cpu", "cuda"),
               help="device; default: cuda for .plan files, else cpu")
    add_precision(parser, choices=("fp32", "fp16", "bf16", "auto"), default="auto",
                  help="precision to time: auto times each backend at the precisions worth "
                       "comparing here (OpenVINO at fp32 and, where the CPU computes it, bf16; "
                       "the others at fp32; an --engine .plan at its own); fp16 needs a GPU, "
                       "bf16 is OpenVINO's")
    parser.add_argument("--batch", type=batch_sizes, default=list(DEFAULT_BATCHES),
                        metavar="1,8,32", help="batch sizes, comma-separated")
    parser.add_argument("--warmup", type=int, default=3, metavar="N",
                        help="untimed batches before timing")
    parser.add_argument("--min-time", type=float, default=3.0, metavar="S",
                        help="seconds to time each configuration (at least 5 batches)")
    parser.add_argument("--e2e", action="store_true",
                        help="also time end to end from JPEG bytes (decode, preprocess, infer, "
                             "L2-normalise; decoding overlapped on a thread)")
    parser.add_argument("--target-fps", type=_fps, metavar="FPS",
                        help="plan crops per frame at this frame rate: the largest measured batch "
                             "whose end-to-end p90 latency fits 1/FPS, and the cvnet-build "
                             "--batch profile for it (turns --e2e on)")
    parser.add_argument("--baselines", action="store_true",
                        help="also time the eight Table 2 baselines on the same backends")
    parser.add_argument("--arch", default="cvnet",
                        help="registered model of a default run (cvnet_tiny for a quick check)")
    add_input_size(parser, help="input size of a default run (default: 256x256) or a .pt file "
                                "(default: the size it was trained at, else 256x256; another "
                                "size is warned about); .plan and .onnx files fix their own")
    add_threads(parser, help="CPU threads for ONNX Runtime, OpenVINO and PyTorch (default: "
                             "physical cores for ONNX Runtime and OpenVINO; for PyTorch, the "
                             "physical cores other processes leave free, see docs/threads.md)")
    add_verification(parser, default=DEFAULT_IMAGES,
                     images_help="verification images each path's agreement with its FP32 "
                                 "reference is measured on (cosine, top-5 agreement)",
                     skip_help="time only: no agreement figures, no fastest-path line")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="where default runs keep their exports; default: $CVNET_CACHE/bench "
                             "or ~/.cache/cvnet/bench")
    add_json_out(parser, aliases=("--json",), help="write the full report as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write the measurements as CSV")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw FPS against parameters (needs matplotlib: cvnet[plot])")
    add_verbose(parser)
    return parser


def plan_targets(args: argparse.Namespace, threads: int
                 ) -> Tuple[List[Target], Dict[str, Any]]:
    """The main targets a command line asks for, and the options of its baseline targets."""
    if args.engine:
        if args.baselines:
            raise BenchError("--baselines exports the baselines on the host; run it without "
                             "--engine")
        return engine_targets(args.engine, backends=args.backend, device=args.device,
                              precision=args.precision, threads=threads,
                              input_size=args.input_size,
                              arch=args.arch if args.arch != "cvnet" else None,
                              batch_max=max(args.batch), torch_threads=args.threads), {}
    device = args.device or "cpu"
    backends = list(args.backend or DEFAULT_BACKENDS)
    if not args.backend and device == "cpu" and args.precision != "fp16" and openvino_installed():
        backends.append("openvino")
    options = dict(backends=backends, device=device,
                   precision=args.precision, threads=threads,
                   input_size=args.input_size or DEFAULT_SIZE,
                   batch_max=max(args.batch), cache=args.cache_dir, torch_threads=args.threads)
    return default_targets([args.arch], **options), options


def open_reference(path: str, backend: str, args: argparse.Namespace, threads: int) -> Any:
    """The FP32 reference runner of the agreement figures, on the CPU, not yet activated."""
    from cvnet.engines import open_engine

    options = runner_options(backend, "cpu", "fp32", threads, args.input_size,
                             args.arch if args.arch != "cvnet" or not args.engine else None,
                             max(args.batch), args.threads)
    return open_engine(path, **options)


def run(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """Runs the benchmark a parsed command line asks for; returns the Markdown report."""
    if args.verify and args.verify_images == 1:
        raise BenchError("--verify-images must be >= 2 (retrieval agreement needs a gallery), "
                         "or 0 / --no-verify for none")
    if args.warmup < 0 or args.min_time < 0 or (args.threads is not None and args.threads < 1):
        raise BenchError("--warmup and --min-time must be >= 0 and --threads >= 1; got {}, {}, "
                         "{}".format(args.warmup, args.min_time, args.threads))
    warning = overload_warning(load_average(), usable_cpus())
    if warning:
        logger.warning("%s", warning)
    threads = args.threads or physical_cores()
    if args.target_fps and not args.e2e:
        logger.info("--target-fps plans with end-to-end latencies: timing --e2e too")
        args.e2e = True
    main_targets, options = plan_targets(args, threads)
    settings = dict(batches=args.batch, warmup=args.warmup, min_time=args.min_time, e2e=args.e2e,
                    threads=threads)
    agreement = None
    references = {t.reference for t in main_targets if t.reference is not None}
    if args.verify and args.verify_images >= 2 and references:
        agreement = Agreement(args.verify_images, lambda path, backend: open_reference(
            path, backend, args, threads))
        settings.update(verify_images=args.verify_images, agreement_reference=", ".join(
            sorted(REFERENCE_NAMES.get(backend, backend) for _, backend in references)))
    rows = []
    for target in main_targets:
        rows += measure(target, args.batch, warmup=args.warmup, min_time=args.min_time,
                        e2e=args.e2e, agreement=agreement)
    for arch in baseline_archs() if args.baselines else []:
        try:  # one baseline that fails to export or run loses no other
            for target in default_targets([arch], **options):
                rows += measure(target, args.batch, warmup=args.warmup,
                                min_time=args.min_time, e2e=args.e2e)
        except (CVNetError, RuntimeError) as err:
            logger.error("baseline %s failed, skipped: %s", arch, err)
    try:
        configured = load_plugin(BENCH, "torch_threads")  # the host's PyTorch thread policy
    except PluginError as err:  # a broken host install costs the report a field, not the run
        logger.warning("the report has no PyTorch thread settings: %s", err)
        configured = None
    torch_threads = configured() if configured is not None else None
    if torch_threads is not None:
        settings["torch_threads"] = torch_threads._asdict()
    report = build_report(rows, load_table2(), probe_machine(),
                          command=" ".join(["cvnet-bench"] + list(argv)),
                          date=datetime.datetime.now(datetime.timezone.utc).strftime(
                              "%Y-%m-%d %H:%M UTC"), settings=settings)
    if args.target_fps:
        from cvnet.benchmarks.planner import plan_batches

        report["plan"] = plan_batches(rows, args.target_fps)
    if args.json_out:
        write_json(args.json_out, report)
    if args.csv:
        from cvnet.benchmarks.report import BenchRow
        write_csv(args.csv, [BenchRow(**r) for r in report["results"]])
    if args.plot:
        write_plot(args.plot, report)
    return markdown_report(report)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        text = run(args, argv)
    except CVNetError as err:
        logger.error("%s", err)
        return EXIT_ERROR
    print(text, end="")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
