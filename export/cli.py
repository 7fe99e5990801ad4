"""``cvnet-export``: PyTorch checkpoint -> verified ONNX file + sidecar for TensorRT and the Jetson.

Also runs as ``python -m cvnet.export``. Exit status: 0 written; 1 error (a missing or unreadable
checkpoint, weights that do not fit, a bad option value, an unwritable output, an export or
verification failure); 2 bad command line. Nothing is written unless everything succeeded. torch
and the exporter are imported after the arguments are parsed, so ``--help`` answers at once.
"""

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_alias, add_input_size,
                            add_json_print, add_output, add_precision, add_seed, add_verbose,
                            add_verification, backend_list, setup_logging)
from cvnet.core.errors import CVNetError
from cvnet.core.parity import record_summary
from cvnet.core.tensorrt_ops import JETSON_NANO_TENSORRT, known_versions
from cvnet.export.defaults import DEFAULT_DYNAMIC_BATCH, DEFAULT_IMAGE_COUNT, DEFAULT_OPSET

if TYPE_CHECKING:  # torch-importing; loaded after parsing
    from cvnet.export.pipeline import ExportOptions, ExportResult

logger = logging.getLogger(__name__)


def _batch_range(text: str) -> Tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, e.g. 1:32, got {text!r}") from None
    return low, high


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, e.g. '{{\"widths\": [256, 512, "
                                         f"768]}}', got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cvnet-export",
        description="Export a cvnet checkpoint to an ONNX file that TensorRT 8.2 (Jetson Nano, "
                    "JetPack 4.6) and newer TensorRT parse, verify it against PyTorch with ONNX "
                    "Runtime, and write the sidecar (<output>.json) that devices read.",
        epilog="Exit status: 0 written, 1 error (bad input, export or verification failed), 2 "
               "usage. Nothing is written unless everything succeeded.")
    parser.add_argument("checkpoint", nargs="?",
                        help="cvnet-train checkpoint or plain state_dict (.pt); loaded with "
                             "torch.load(weights_only=True)")
    add_output(parser, default="cvnet.onnx",
               help="ONNX file to write (default: cvnet.onnx); the sidecar is <output>.json")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", metavar="NAME",
                       help="registered model name; needed for plain state_dicts and "
                            "--random-init (cvnet-summary --list shows them)")
    model.add_argument("--model-kwargs", type=_json_object, default={}, metavar="JSON",
                       help="model constructor options as a JSON object, on top of the "
                            "checkpoint's, e.g. '{\"widths\": [256, 384, 512]}'")
    model.add_argument("--random-init", action="store_true",
                       help="export an untrained model (for benchmarking); the sidecar says so")
    graph = parser.add_argument_group("graph")
    graph.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                       help="ONNX opset (default: %(default)s, the newest TensorRT 8.2 reads)")
    graph.add_argument("--trt-version", default=JETSON_NANO_TENSORRT,
                       help="TensorRT version the graph must parse in: its operator list, "
                            "highest opset and input types are checked (default: %(default)s, "
                            f"the Jetson Nano's; lists: {', '.join(known_versions())})")
    batch = graph.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, metavar="N", help="static batch size N")
    batch.add_argument("--dynamic-batch", type=_batch_range, metavar="MIN:MAX",
                       default=DEFAULT_DYNAMIC_BATCH,
                       help="dynamic batch axis (the default); the range is recorded for engine "
                            "profiles (default: %d:%d)" % DEFAULT_DYNAMIC_BATCH)
    add_input_size(graph, aliases=("--imgsz",),
                   help="input size, HxW or one size in pixels (default: the size the "
                        "checkpoint was trained at, else 256); another size than the trained one "
                        "is exported with a warning")
    graph.add_argument("--preprocess-in-graph", action="store_true",
                       help="the graph takes RGB pixels NHWC at the input size (what "
                            "cvnet.core.preprocess.resize_rgb returns) and does the cast, /255, "
                            "mean/std and layout change itself")
    graph.add_argument("--input-dtype", choices=("uint8", "float32"),
                       help="with --preprocess-in-graph: the pixels' type (default: uint8 where "
                            "the target TensorRT takes uint8 inputs, 8.5 and newer; float32 for "
                            "8.2)")
    graph.add_argument("--optimize-for", choices=("any", "onnxruntime"), default="any",
                       help="any: the graph as exported, which every runtime reads well; "
                            "onnxruntime: rewritten so that ONNX Runtime's CPU provider keeps "
                            "the activations in its NCHWc layout (channel reductions on "
                            "channels-last rows, broadcasts spread to equal shapes, spatial "
                            "means as GlobalAveragePool; the same results, checked; faster in "
                            "ONNX Runtime at batch 1 and 8, for ONNX Runtime only; docs/cpu.md)")
    add_precision(graph, choices=("fp32", "fp16"), default="fp32", aliases={"--half": "fp16"},
                  help="fp16: an FP16-typed graph (weights and activations FP16; attention and "
                       "I/O FP32) for TensorRT 11, whose builder has no FP16 flag")
    check = parser.add_argument_group("verification")
    add_verification(check, default=DEFAULT_IMAGE_COUNT,
                     images_help="images to verify on (default: %(default)s)",
                     skip_help="skip the ONNX Runtime vs PyTorch comparison")
    check.add_argument("--verify-backend", type=backend_list, default=("onnxruntime",),
                       metavar="onnxruntime|openvino",
                       help="runtimes to check against PyTorch, comma-separated (default: "
                            "onnxruntime, always checked). openvino checks OpenVINO at fp32 and, "
                            "where this CPU computes it, bf16 (cosine and top-5 agreement); the "
                            "verdicts go into the sidecar, and the OpenVINO runner uses bf16 "
                            "only where it passed (docs/cpu.md)")
    add_seed(check, help="seed of the verification images and of --random-init weights "
                         "(default: %(default)s)")
    parser.add_argument("--build-engine", action="store_true",
                        help="then build the TensorRT plan (<output>.plan) with cvnet-build's "
                             "defaults: FP16 where the GPU has fast FP16 (else FP32, said in the "
                             "log; an FP16 graph from --precision fp16 on TensorRT 11); needs "
                             "TensorRT and a GPU, i.e. run this on the device")
    add_alias(parser, "--engine", dest="build_engine", new="--build-engine", value=True)
    add_json_print(parser, help="print the sidecar as JSON instead of a summary")
    add_verbose(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> "ExportOptions":
    """Translates parsed arguments into :class:`ExportOptions` (the one place that does)."""
    from cvnet.export.pipeline import ExportOptions

    return ExportOptions(
        output=args.output, arch=args.arch, model_kwargs=args.model_kwargs,
        random_init=args.random_init, opset=args.opset, trt_version=args.trt_version,
        batch=args.batch, dynamic_batch=args.dynamic_batch, input_size=args.input_size,
        preprocess_in_graph=args.preprocess_in_graph, input_dtype=args.input_dtype,
        half=args.precision == "fp16", verify=args.verify, verify_images=args.verify_images,
        optimize_for=args.optimize_for,
        verify_backends=tuple(name for name in args.verify_backend if name != "onnxruntime"),
        seed=args.seed)


def format_result(result: "ExportResult") -> str:
    """The human summary printed after a successful export."""
    meta = result.metadata
    shape = ("N x {} x {} x 3".format(meta.input_height, meta.input_width)
             if meta.input_layout == "NHWC"
             else "N x 3 x {} x {}".format(meta.input_height, meta.input_width))
    batch = ("{}..{}".format(meta.batch_min, meta.batch_max) if meta.dynamic_batch
             else "static {}".format(meta.batch_min))
    lines = [
        f"wrote {result.onnx_path}",
        f"  and {result.sidecar_path}",
        f"model: {meta.variant} ({meta.param_count:,} parameters"
        f"{', UNTRAINED' if meta.untrained else ''}); {meta.graph_precision} graph, opset "
        f"{meta.opset}, checked for TensorRT {meta.target_tensorrt}",
        f"input: {meta.input_name} {meta.input_dtype} {meta.input_layout} ({shape}), batch "
        f"{batch}; normalisation: {'in graph' if meta.preprocess_in_graph else 'on the device'}",
        f"output: {meta.output_name} float32 (N x {meta.embedding_dim}), not L2-normalised",
        f"export time: {result.export_seconds:.1f} s",
    ]
    report = result.verification
    if report is None:
        lines.append("verification: SKIPPED (--no-verify)")
    else:
        lines += [f"verification: passed (cosine >= {report.min_cosine}), {report.seconds:.1f} s; "
                  f"{report.backend} vs {report.reference}; input {report.input_path}", "",
                  report.table()]
        for record in report.runtime_checks:
            lines.append(f"{record['backend']} {record['precision']}: "
                         f"{'passed' if record['passed'] else 'FAILED (refused at run time)'}, "
                         f"{record_summary(record)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from cvnet.export.pipeline import export_model
    from cvnet.models.registry import list_models

    if args.arch is not None and args.arch not in list_models():  # checked here: needs torch
        parser.error("argument --arch: invalid choice: {!r} (choose from {})".format(
            args.arch, ", ".join(list_models())))
    if not args.verify:
        logger.warning("verification skipped (--no-verify): the graph is not compared with "
                       "PyTorch")
    try:
        result = export_model(args.checkpoint, options_from_args(args))
    except CVNetError as err:
        logger.error("%s", err)
        return EXIT_ERROR
    print(json.dumps(result.metadata.to_dict(), indent=2) if args.json else format_result(result))
    return _build_engine(result.onnx_path) if args.build_engine else EXIT_OK


def _build_engine(onnx_path: str) -> int:
    """``--build-engine``: builds the plan with cvnet-build's builder; 1 when it cannot."""
    from cvnet.engines.builder import build_engine  # device-side package; TensorRT imported inside

    try:
        built = build_engine(onnx_path)
    except CVNetError as err:
        logger.error("the ONNX file is written, but no engine was built: %s", err)
        logger.error("build it on the device that will run it: cvnet-build %s", onnx_path)
        return EXIT_ERROR
    print("wrote {}\n  and {}".format(built.plan_path, built.sidecar_path))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
