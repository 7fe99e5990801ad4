"""``python3 -m cvnet.engines {build,info,env}`` and ``cvnet-build`` (Python 3.6, no torch).

``--help`` works everywhere, TensorRT or not; ``build`` says exactly what is missing when it
cannot run, ``info`` reads a sidecar and says whether the model can run on this machine, and
``env`` lists what this machine has.
"""

import argparse
import importlib
import json
import logging
import platform
import sys
from typing import Any, Dict, List, Optional

from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_device, add_json_print,
                            add_output, add_precision, add_verbose, add_verification, setup_logging)
from cvnet.core.errors import CVNetError
from cvnet.core.parity import RUNTIME_CHECKS, record_summary, record_verdict
from cvnet.engines.build_policy import (DEFAULT_TIMING_CACHE, DEFAULT_WORKSPACE_MIB,
                                        KEEP_FP32_GROUPS, BuildOptions, parse_batch)
from cvnet.engines.builder import build_engine
from cvnet.engines.machine import installed

logger = logging.getLogger(__name__)


def _found(module: str) -> str:
    """"found" or "NOT FOUND": whether a package is installed, for ``--help``."""
    return "found" if installed(module) else "NOT FOUND"


def _build_epilog() -> str:
    return (
        "Needs TensorRT's Python bindings (here: {}) and an NVIDIA GPU. The parity check after "
        "the build also needs pycuda (here: {}) and onnxruntime (here: {}); INT8 needs pycuda. "
        "Build on the "
        "machine that runs the engine: a plan only loads on the TensorRT release and GPU that "
        "built it. On a Jetson Nano: add swap before the first build, keep the default "
        "workspace, and keep the timing cache to make rebuilds fast.".format(
            _found("tensorrt"), _found("pycuda"), _found("onnxruntime")))


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``build`` (``python3 -m cvnet.engines build`` and ``cvnet-build``)."""
    parser.add_argument("onnx", help="the .onnx file written by cvnet-export (its sidecar "
                        "<onnx>.json next to it)")
    add_output(parser, metavar="PLAN",
               help="plan file to write (default: next to the ONNX, suffix .plan); its sidecar "
                    "PLAN.json is written next to it")
    add_precision(parser, choices=("fp32", "fp16", "int8"), default="fp16",
                  aliases={"--fp32": "fp32", "--int8": "int8"},
                  help="fp16 where the GPU has fast FP16 (else fp32, said in a warning; on "
                       "TensorRT 11 the ONNX's types decide, see cvnet-export --precision); "
                       "int8 calibrates with --calib (TensorRT 8.x-10.x on GPUs with fast INT8; "
                       "not the Jetson Nano)")
    parser.add_argument("--batch", type=parse_batch, metavar="MIN:OPT:MAX",
                        help="optimisation profile of the dynamic batch (default: the sidecar's "
                        "batch_min:min(8,batch_max):batch_max)")
    parser.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB, metavar="MIB",
                        help="builder workspace limit in MiB (default: %(default)s; TensorRT "
                        "8.2's own default is 0)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--timing-cache", metavar="FILE",
                       help="timing cache to read and update (default: {} next to the "
                       "plan)".format(DEFAULT_TIMING_CACHE))
    cache.add_argument("--no-timing-cache", action="store_true", help="use no timing cache")
    parser.add_argument("--keep-fp32", choices=KEEP_FP32_GROUPS + ("none",),
                        default=KEEP_FP32_GROUPS[0],
                        help="layers kept FP32 in an FP16 engine: 'attention' (the channel "
                        "attention's MatMul/ReduceMax/Softmax, whose sums can overflow FP16; the "
                        "default) or 'none'")
    parser.add_argument("--calib", metavar="DIR",
                        help="folder of calibration images (--precision int8)")
    parser.add_argument("--calib-cache", metavar="FILE",
                        help="calibration cache (default: PLAN.calib)")
    parser.add_argument("--calib-images", type=int, default=512, metavar="N",
                        help="most calibration images to use (default: %(default)s)")
    add_verification(parser, default=8, aliases=("--verify",),
                     images_help="images for the parity check against ONNX Runtime after the "
                                 "build (default: %(default)s; 0 skips it, as --no-verify does)",
                     skip_help="skip the parity check")
    add_device(parser, gpu=True, default=0,
               help="GPU to build on and to check parity on, cuda:N (or N); the plan runs on "
                    "GPUs like it (default: cuda:0)")
    add_verbose(parser, help="TensorRT's verbose log, and debug messages")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python3 -m cvnet.engines``."""
    parser = ArgumentParser(
        prog="python3 -m cvnet.engines",
        description="Build TensorRT engines on this device and inspect cvnet models.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True  # Python 3.6 has no add_subparsers(required=)
    build = commands.add_parser(
        "build", help="ONNX -> TensorRT plan (+ sidecar), on this GPU",
        description="Build a TensorRT plan from a cvnet ONNX file, on the GPU that will run it.",
        epilog=_build_epilog())
    add_build_arguments(build)
    info = commands.add_parser(
        "info", help="what a model's sidecar says, and whether it runs here",
        description="Print a model's sidecar (input, embedding, engine build) and check a plan "
        "against this machine's TensorRT and GPU. Needs neither TensorRT nor a GPU.")
    info.add_argument("model", help="a .plan, .engine or .onnx file (or its .json sidecar)")
    add_json_print(info, help="print the report as JSON")
    add_verbose(info)
    env = commands.add_parser(
        "env", help="what this machine has for the engines",
        description="Python, CPU, numpy, OpenCV, ONNX Runtime (and its providers), TensorRT, "
        "pycuda, the GPU and, on a Jetson, its model, L4T release and power mode.")
    add_verbose(env)
    return parser


def build_only_parser() -> argparse.ArgumentParser:
    """The parser of ``cvnet-build`` (the ``build`` subcommand alone)."""
    parser = ArgumentParser(
        prog="cvnet-build",
        description="Build a TensorRT plan from a cvnet ONNX file, on the GPU that will run it.",
        epilog=_build_epilog())
    add_build_arguments(parser)
    return parser


def _run_build(args: argparse.Namespace) -> int:
    keep = () if args.keep_fp32 == "none" else (args.keep_fp32,)
    options = BuildOptions(
        fp16=args.precision != "fp32", batch=args.batch, workspace_mib=args.workspace,
        timing_cache=None if args.no_timing_cache else (args.timing_cache or ""),
        keep_fp32=keep, int8=args.precision == "int8", calib_dir=args.calib,
        calib_cache=args.calib_cache, calib_images=args.calib_images,
        verify_images=args.verify_images if args.verify else 0, device=args.device,
        verbose=args.verbose)
    result = build_engine(args.onnx, args.output, options=options)
    info = result.info
    parity = info.parity or {}
    print("{} ({}, TensorRT {}, {} sm_{}, batch {}:{}:{}, {:.0f} s{})".format(
        result.plan_path, info.precision.upper(), info.tensorrt_version, info.gpu_name,
        info.compute_capability.replace(".", ""), info.batch_min, info.batch_opt,
        info.batch_max, info.build_time_s,
        ", min cosine vs ONNX Runtime {}".format(parity["min_cosine"]) if parity else ""))
    return EXIT_OK


def _machine() -> Dict[str, Any]:
    """This machine's TensorRT version and GPU, each None when unavailable (with the reason)."""
    from cvnet.engines.gpu import gpu_info

    found = {"tensorrt": None, "gpu": None, "notes": []}  # type: Dict[str, Any]
    try:
        found["tensorrt"] = str(importlib.import_module("tensorrt").__version__)
    except ImportError as err:
        found["notes"].append("TensorRT: not importable ({})".format(err))
    try:
        found["gpu"] = gpu_info(0)
    except CVNetError as err:
        found["notes"].append("GPU: {}".format(err))
    return found


def _run_info(args: argparse.Namespace) -> int:
    from cvnet.core.artifact import read_sidecar
    from cvnet.engines.metadata import compatibility_problems, engine_info

    path = args.model[:-5] if args.model.endswith(".json") else args.model
    metadata = read_sidecar(path)
    engine = engine_info(metadata)
    report = {"model": path, "sidecar": {k: v for k, v in metadata.to_dict().items()
                                         if k != "engine"}}  # type: Dict[str, Any]
    if engine is not None:
        machine = _machine()
        report["engine"] = engine.to_dict()
        gpu = machine["gpu"]
        report["this_machine"] = {
            "tensorrt": machine["tensorrt"],
            "gpu": None if gpu is None else "{} (compute capability {})".format(
                gpu.name, gpu.compute_capability),
            "notes": machine["notes"],
            "problems": (compatibility_problems(engine, machine["tensorrt"], gpu)
                         if machine["tensorrt"] else None)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(_info_text(metadata, engine, report))
    return 0


def _info_text(metadata: Any, engine: Any, report: Dict[str, Any]) -> str:
    lines = [
        "{} ({} sidecar)".format(report["model"], metadata.artifact_type),
        "  model      {} {} ({:,} parameters{})".format(
            metadata.model, metadata.variant, metadata.param_count,
            ", untrained" if metadata.untrained else ""),
        "  input      {!r} {} {}x{} {}, mean/std {}".format(
            metadata.input_name, metadata.input_layout, metadata.input_height,
            metadata.input_width, metadata.input_dtype,
            "in graph" if metadata.preprocess_in_graph else "{} / {}".format(
                list(metadata.mean), list(metadata.std))),
        "  output     {!r} ({}, {}-d, {}L2-normalised)".format(
            metadata.output_name, "float32", metadata.embedding_dim,
            "" if metadata.output_l2_normalized else "not "),
        "  graph      opset {}, {}, batch {}:{}{}".format(
            metadata.opset, metadata.graph_precision, metadata.batch_min, metadata.batch_max,
            " (dynamic)" if metadata.dynamic_batch else " (static)"),
    ]
    optimized = (metadata.extra or {}).get("optimized_for")
    if optimized:
        lines.append("  rewritten  for {runtime}: {rewrites}".format(**optimized))
    records = (metadata.verification or {}).get(RUNTIME_CHECKS) or []
    for number, record in enumerate(records):  # run-time precisions checked at export
        lines.append("  {:<10} {} {}: {}{}".format(
            "" if number else "checked", record.get("backend"), record.get("precision"),
            "passed, " if record_verdict(record) else "FAILED (refused at run time), ",
            record_summary(record)))
    if engine is not None:
        here = report["this_machine"]
        lines += [
            "  engine     {} built by TensorRT {} on {} (compute capability {}) in {} s".format(
                engine.precision.upper(), engine.tensorrt_version, engine.gpu_name,
                engine.compute_capability, engine.build_time_s),
            "             profile {}:{}:{}, workspace {} MiB, {} layers pinned FP32".format(
                engine.batch_min, engine.batch_opt, engine.batch_max,
                engine.workspace_bytes >> 20, len(engine.fp32_layers)),
            "  parity     {}".format(_parity_text(engine.parity)),
            "  this host  TensorRT {}, GPU {}".format(here["tensorrt"] or "not installed",
                                                      here["gpu"] or "none found"),
            "  runs here  {}".format(
                "cannot tell: TensorRT is not installed here" if here["problems"] is None
                else "no: {}; rebuild with cvnet-build".format("; ".join(here["problems"]))
                if here["problems"] else "yes" if here["gpu"] else "yes, if the GPU is the "
                "one recorded (no GPU found to compare)"),
        ]
    return "\n".join(lines)


def _parity_text(parity: Optional[Dict[str, Any]]) -> str:
    """The build-time parity figures in one line (top-k agreement where the sidecar has it)."""
    if parity is None:
        return "not measured"
    text = "min cosine {min_cosine} (mean {mean_cosine}) vs {reference} on {images} images".format(
        **parity)
    if "top1_agreement" in parity:
        text += ", top-1/top-5 agreement {:.0%}/{:.0%}".format(parity["top1_agreement"],
                                                            parity["top5_agreement"])
    return text


def _run_env(args: argparse.Namespace) -> int:
    from cvnet.engines import machine

    rows = [("python", platform.python_version()), ("platform", platform.platform()),
            ("cpu", "{} ({} usable CPUs, load {})".format(
                machine.cpu_model(), machine.usable_cpus(), machine.load_average()))]
    for module in ("numpy", "cv2", "onnxruntime", "tensorrt", "pycuda"):
        rows.append((module, machine.probe(module).text))
    try:
        ort = importlib.import_module("onnxruntime")
        rows.append(("ort providers", ", ".join(ort.get_available_providers())))
    except ImportError:
        pass
    rows.append(("gpu", machine.gpu_description()))
    jetson = machine.jetson_info()
    if jetson is not None:
        rows.append(("jetson", "{model}, L4T {l4t} (JetPack {jetpack}), power mode "
                               "{power_mode}".format(**jetson)))
    width = max(len(name) for name, _ in rows)
    print("\n".join("{}  {}".format(name.ljust(width), value) for name, value in rows))
    return 0


_COMMANDS = {"build": _run_build, "info": _run_info, "env": _run_env}


def _dispatch(command: str, args: argparse.Namespace) -> int:
    setup_logging(getattr(args, "verbose", False))
    try:
        return _COMMANDS[command](args)
    except CVNetError as err:
        logger.error("%s", err)
        return EXIT_ERROR


def main(argv: Optional[List[str]] = None) -> int:
    """``python3 -m cvnet.engines``; returns the exit status."""
    args = build_parser().parse_args(argv)
    return _dispatch(args.command, args)


def build_main(argv: Optional[List[str]] = None) -> int:
    """``cvnet-build``; returns the exit status."""
    args = build_only_parser().parse_args(argv)
    return _dispatch("build", args)


if __name__ == "__main__":
    sys.exit(main())
