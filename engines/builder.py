"""ONNX -> TensorRT plan, built on the device that will run it (``cvnet-build``).

A plan only loads on the TensorRT release and GPU that built it, so this runs on the Jetson (or
whatever GPU runs the engine). One build:

1. read the ONNX sidecar (input size, batch range, graph precision, opset) and check the file
   against its recorded hash;
2. parse the ONNX with TensorRT's parser, collecting every parser error into the raised message;
3. configure: a workspace limit (TensorRT 8.2's default is 0), FP16 where the GPU has fast FP16
   (TensorRT 11 has no FP16 flag: the ONNX types decide), the attention layers pinned to FP32,
   an optimisation profile for the dynamic batch, a timing cache, optionally INT8;
4. build, with the chosen GPU's primary CUDA context current (``--device``), then write
   ``cvnet.plan`` and ``cvnet.plan.json`` atomically (the sidecar is the ONNX's plus an
   ``engine`` block, :mod:`cvnet.engines.metadata`);
5. measure embedding parity with ONNX Runtime on the GPU that built it (cosine, max difference,
   top-1/top-5 retrieval agreement), and record it.

What a build decides (batch profile, precision, attention pinned to FP32, whether the parser
reads the opset) is :mod:`cvnet.engines.build_policy`; the parity figures and their thresholds
are :mod:`cvnet.core.parity`'s, shared with cvnet-export. Every TensorRT API difference goes
through :mod:`cvnet.engines.trt_compat`; TensorRT's own messages go to the ``tensorrt`` logger
(:func:`cvnet.engines.trt_compat.make_logger`).
"""

import contextlib
import logging
import os
import threading
import time
import traceback
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

import cvnet
from cvnet.core.artifact import (ArtifactMetadata, check_artifact_file, read_sidecar, sidecar_path,
                                 sidecar_text)
from cvnet.core.errors import ConfigError
from cvnet.core.fileio import (check_writable, sha256_bytes, sha256_file, write_bytes_atomic,
                               write_files_atomic, write_text_atomic)
from cvnet.core.parity import MIN_COSINE, parity_figures, passed, verification_images
from cvnet.engines import gpu, trt_compat
from cvnet.engines.build_policy import (DEFAULT_TIMING_CACHE, BuildOptions, attention_layers,
                                        check_parser_opset, decide_precision, profile_shapes)
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineBuildError, MissingDependencyError
from cvnet.engines.gpu import GpuInfo
from cvnet.engines.metadata import EngineInfo, plan_sidecar, utc_now

logger = logging.getLogger(__name__)

#: Seconds between "still building" log lines.
HEARTBEAT_S = 30.0


class BuildResult(NamedTuple):
    """What a build wrote.

    Attributes:
        plan_path: The plan file.
        sidecar_path: Its sidecar, or None when the ONNX had none.
        info: The engine block written into the sidecar.
    """

    plan_path: str
    sidecar_path: Optional[str]
    info: EngineInfo


# ---------------------------------------------------------------------------------------------
# Building


class _Heartbeat(object):
    """Logs "still building" every ``HEARTBEAT_S`` seconds (TensorRT 8.2 reports no progress)."""

    def __init__(self, what: str):
        self._what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cvnet-build-heartbeat")
        self._thread.daemon = True

    def _beat(self) -> None:
        started = time.time()
        while not self._stop.wait(HEARTBEAT_S):
            logger.info("still %s: %.0f s", self._what, time.time() - started)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()


def _parse(trt: Any, builder: Any, onnx_path: str, trt_logger: Any) -> Tuple[Any, Any]:
    network = trt_compat.create_network(builder, trt)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(onnx_path):
        errors = trt_compat.parser_errors(parser) or ["(the parser recorded no error message)"]
        raise EngineBuildError(
            "TensorRT {} cannot parse {} ({} error(s)):\n  {}\nCheck that the graph was exported "
            "for this TensorRT (opset <= 13 for 8.2: cvnet-export --trt-version) and that the file "
            "is complete.".format(trt_compat.tensorrt_version(trt), onnx_path, len(errors),
                                  "\n  ".join(errors)))
    return network, parser


def _load_timing_cache(config: Any, path: Optional[str], trt_logger: Any, version: str) -> None:
    if path is None:
        return
    data = b""
    if os.path.exists(path):
        with open(path, "rb") as handle:
            data = handle.read()
    status, said = trt_compat.attach_timing_cache(config, data, trt_logger)
    heard = "; TensorRT said: {}".format(" | ".join(said)) if said else ""
    if status == trt_compat.TIMING_CACHE_REFUSED:
        logger.warning("timing cache %s (%d bytes) is not used: TensorRT %s refused it or said it "
                       "will not use it (corrupt, or made by another TensorRT release or GPU)%s. "
                       "Building with a fresh cache, which replaces the file after the build",
                       path, len(data), version, heard)
    elif status == trt_compat.TIMING_CACHE_NONE:
        logger.warning("TensorRT %s could not create a timing cache%s; building without one (no "
                       "%s is written)", version, heard, path)
    elif data:
        logger.info("using timing cache %s (%d bytes)", path, len(data))


def engine_bytes_from_onnx(onnx_path: str, *, options: BuildOptions = BuildOptions(),
                           metadata: Optional[ArtifactMetadata] = None,
                           timing_cache: Optional[str] = None,
                           calib_cache: Optional[str] = None,
                           onnx_sha256: Optional[str] = None) -> Tuple[bytes, EngineInfo]:
    """Builds a serialized engine in memory, on GPU ``options.device``.

    TensorRT builds on the current CUDA device, so the device's primary context is made current on
    this thread for the whole build (:func:`cvnet.engines.gpu.primary_context`), and every TensorRT
    object of the build is gone before it is popped.

    Args:
        onnx_path: The ONNX file.
        options: How to build.
        metadata: The ONNX sidecar, or None.
        timing_cache: Timing cache file to read and update, or None.
        calib_cache: INT8 calibration cache file (with ``options.int8``).
        onnx_sha256: SHA-256 of the ONNX file (recorded with a calibration cache); computed
            when needed and not given.

    Returns:
        The plan bytes and the engine block (``plan_sha256``/``onnx_sha256`` not yet set).

    Raises:
        MissingDependencyError: TensorRT (or, for INT8, pycuda) is not installed.
        EngineBuildError: Parsing or building failed; the message has every parser error.
        EngineError: GPU ``options.device`` does not exist or its context cannot be used.
    """
    trt = require("tensorrt", "{}: building a TensorRT engine".format(onnx_path))
    check_parser_opset(metadata, trt_compat.tensorrt_version(trt), onnx_path)
    device = gpu.gpu_info(options.device)
    if options.int8 and onnx_sha256 is None:
        onnx_sha256 = sha256_file(onnx_path)
    with gpu.primary_context(options.device):
        try:
            return _build(trt, device, onnx_path, options, metadata, timing_cache, calib_cache,
                          onnx_sha256 or "")
        except BaseException as err:
            # The traceback holds _build's frames, and so the builder, network, parser and
            # config, until the caller handles the error: long after the context is popped
            # and released. Clear those frames' locals now, while the context is current.
            traceback.clear_frames(err.__traceback__)
            raise


def _build(trt: Any, device: GpuInfo, onnx_path: str, options: BuildOptions,
           metadata: Optional[ArtifactMetadata], timing_cache: Optional[str],
           calib_cache: Optional[str], onnx_sha256: str) -> Tuple[bytes, EngineInfo]:
    """:func:`engine_bytes_from_onnx` once the device's context is current."""
    version = trt_compat.tensorrt_version(trt)
    started = time.perf_counter()
    trt_logger = trt_compat.make_logger(trt, options.verbose)
    builder = trt.Builder(trt_logger)
    network, parser = _parse(trt, builder, onnx_path, trt_logger)
    inputs = trt_compat.network_inputs(network)
    if len(inputs) != 1 or network.num_outputs != 1:
        raise EngineBuildError("{} has {} inputs and {} outputs; a cvnet graph has one of each "
                               "(images -> embeddings)".format(onnx_path, len(inputs),
                                                               network.num_outputs))
    input_name, input_shape = inputs[0]

    config = builder.create_builder_config()
    workspace = int(options.workspace_mib) << 20
    trt_compat.set_workspace(config, trt, workspace)

    precision, set_fp16, warning = decide_precision(
        trt_compat.fp16_mode(builder, trt), options.fp16,
        metadata.graph_precision if metadata else None)
    if warning:
        logger.warning(warning)
    if set_fp16:
        trt_compat.enable_fp16(builder, config, trt)

    shapes = profile_shapes(input_name, input_shape, options.batch, metadata)
    if shapes is not None:
        trt_compat.add_profile(builder, config, input_name, shapes)
        batch_min, batch_opt, batch_max = (shape[0] for shape in shapes)
    else:
        batch_min = batch_opt = batch_max = int(input_shape[0])

    fp32_layers = []  # type: List[str]
    if precision == "fp16" and "attention" in options.keep_fp32:
        wanted = attention_layers(trt_compat.network_layers(network, trt))
        fp32_layers = trt_compat.pin_layers_fp32(network, config, trt, wanted)
        if wanted and not fp32_layers:
            logger.info("--keep-fp32 attention: this TensorRT follows the ONNX types (no "
                        "per-layer precision); cvnet-export --precision fp16 already keeps "
                        "attention FP32")
        else:
            logger.info("pinned %d attention layers to FP32", len(fp32_layers))

    calibration = None
    with contextlib.ExitStack() as stack:
        if options.int8:
            from cvnet.engines.calibrator import Int8Calibration  # pycuda, only for INT8

            calibration = stack.enter_context(Int8Calibration(
                trt, builder, config, options, metadata, input_name,
                (batch_opt,) + tuple(shapes[0][1:] if shapes else input_shape[1:]), calib_cache,
                onnx_sha256))
            precision = "int8"
        _load_timing_cache(config, timing_cache, trt_logger, version)
        logger.info("building a %s engine from %s with TensorRT %s on GPU %d, %s (batch "
                    "%d:%d:%d, workspace %d MiB); on a Jetson Nano this takes minutes",
                    precision.upper(), os.path.basename(onnx_path), version, device.index,
                    device.name, batch_min, batch_opt, batch_max, options.workspace_mib)
        with _Heartbeat("building"):
            plan = trt_compat.build_serialized(builder, network, config)
    if calibration is not None:
        calibration.check()
    if plan is None:
        raise EngineBuildError(
            "TensorRT {} could not build an engine from {} (its log above says why). Common "
            "causes on a Jetson Nano: not enough memory (add swap, stop other programs, boot "
            "headless), a workspace too small for some layer (--workspace, now {} MiB), or a "
            "batch too large (--batch)".format(version, onnx_path, options.workspace_mib))
    if timing_cache is not None:
        serialized = trt_compat.serialized_timing_cache(config)
        if serialized:
            write_bytes_atomic(timing_cache, serialized)
    build_time = time.perf_counter() - started
    info = EngineInfo(
        precision=precision, tensorrt_version=version, gpu_name=device.name,
        compute_capability=device.compute_capability, batch_min=int(batch_min),
        batch_opt=int(batch_opt), batch_max=int(batch_max), dynamic_batch=shapes is not None,
        workspace_bytes=workspace, build_time_s=round(build_time, 1),
        timing_cache=os.path.basename(timing_cache) if timing_cache else None,
        keep_fp32=("attention",) if fp32_layers else (),
        fp32_layers=tuple(fp32_layers),
        int8_calibration=calibration.record() if calibration is not None else None,
        builder="cvnet-build {}".format(cvnet.__version__), created=utc_now())
    logger.info("built in %.0f s: %.1f MB", build_time, len(plan) / 1e6)
    return plan, info


def default_plan_path(onnx_path: str) -> str:
    """``models/cvnet.onnx`` -> ``models/cvnet.plan``."""
    return os.path.splitext(os.path.abspath(onnx_path))[0] + ".plan"


def _read_onnx_sidecar(onnx_path: str) -> Optional[ArtifactMetadata]:
    if not os.path.exists(sidecar_path(onnx_path)):
        logger.warning("%s has no sidecar (%s): the plan gets none either, so runtimes will "
                       "assume ImageNet mean/std and the engine's input shape; export with "
                       "cvnet-export to get one", onnx_path,
                       os.path.basename(sidecar_path(onnx_path)))
        return None
    metadata = read_sidecar(sidecar_path(onnx_path))
    if metadata.onnx_sha256:
        check_artifact_file(metadata, onnx_path)
    return metadata


def measure_parity(plan_path: str, onnx_path: str, count: int, precision: str,
                   device: int = 0) -> Dict[str, Any]:
    """Embeddings of the built engine vs ONNX Runtime (CPU) on ``count`` synthetic images.

    Raises:
        MissingDependencyError: pycuda or onnxruntime is not installed.
    """
    from cvnet.engines.ort_runner import OrtRunner
    from cvnet.engines.trt_runner import TrtRunner

    images = verification_images(count)
    with OrtRunner(onnx_path, providers=["CPUExecutionProvider"]) as reference:
        expected = reference.embed(images)
    with TrtRunner(plan_path, device=device) as engine:
        actual = engine.embed(images)
    return parity_record(expected, actual, precision)


def parity_record(reference: np.ndarray, engine: np.ndarray, precision: str) -> Dict[str, Any]:
    """The plan sidecar's ``parity`` block: :func:`cvnet.core.parity.parity_figures` of the
    engine's (N, D) embeddings against ONNX Runtime's, and the verdict for ``precision``."""
    figures = parity_figures(reference, engine)
    return {"reference": "onnxruntime (CPU provider)", "images": figures.images,
            "min_cosine": round(figures.cosine_min, 6),
            "mean_cosine": round(figures.cosine_mean, 6),
            "max_abs_diff": figures.max_abs_diff,
            "top1_agreement": figures.top1_agreement, "top5_agreement": figures.top5_agreement,
            "min_cosine_required": MIN_COSINE.get(precision),
            "passed": passed(figures, precision)}


def build_engine(onnx_path: str, plan_path: Optional[str] = None, *,
                 options: BuildOptions = BuildOptions()) -> BuildResult:
    """Builds ``cvnet.plan`` (+ ``cvnet.plan.json``) from ``cvnet.onnx`` (+ its sidecar).

    Args:
        onnx_path: The ONNX file.
        plan_path: Output plan; by default next to the ONNX with the suffix ``.plan``.
        options: How to build.

    Returns:
        What was written.

    Raises:
        EngineBuildError: Missing input, parse or build failure, or parity below the
            precision's threshold (the plan and its sidecar, with the figures, are kept).
        MetadataError: The ONNX sidecar is invalid or belongs to another file.
        MissingDependencyError: TensorRT is not installed.
        OutputPathError: The outputs cannot be written.
    """
    onnx_path = os.path.abspath(onnx_path)
    if not os.path.isfile(onnx_path) or os.path.getsize(onnx_path) == 0:
        raise EngineBuildError("{}: {}; give the .onnx written by cvnet-export".format(
            onnx_path, "no such file" if not os.path.isfile(onnx_path) else "empty file"))
    if options.int8 and not options.calib_dir:
        raise ConfigError("--precision int8 needs --calib DIR, a folder of representative images")
    plan_path = check_writable(plan_path or default_plan_path(onnx_path))
    json_path = check_writable(sidecar_path(plan_path))
    folder = os.path.dirname(plan_path)
    timing_cache = (os.path.join(folder, DEFAULT_TIMING_CACHE) if options.timing_cache == ""
                    else options.timing_cache)
    calib_cache = options.calib_cache or plan_path + ".calib"
    metadata = _read_onnx_sidecar(onnx_path)
    onnx_sha256 = sha256_file(onnx_path)

    plan, info = engine_bytes_from_onnx(onnx_path, options=options, metadata=metadata,
                                        timing_cache=timing_cache, calib_cache=calib_cache,
                                        onnx_sha256=onnx_sha256)
    info = info._replace(plan_sha256=sha256_bytes(plan), onnx_sha256=onnx_sha256)
    if metadata is None:
        write_bytes_atomic(plan_path, plan)
        logger.info("wrote %s (no sidecar)", plan_path)
        return BuildResult(plan_path, None, info)
    name = os.path.basename(plan_path)
    write_files_atomic({plan_path: plan,
                        json_path: sidecar_text(plan_sidecar(metadata, name, info),
                                                source=json_path).encode("utf-8")})
    logger.info("wrote %s and %s", plan_path, os.path.basename(json_path))
    del plan

    if options.verify_images > 0:
        try:
            figures = measure_parity(plan_path, onnx_path, options.verify_images, info.precision,
                                     options.device)
        except MissingDependencyError as err:
            logger.warning("parity with ONNX Runtime not measured: %s", err)
        else:
            info = info._replace(parity=figures)
            write_text_atomic(json_path, sidecar_text(plan_sidecar(metadata, name, info),
                                                      source=json_path))
            logger.info("parity with ONNX Runtime on %d images: min cosine %.6f, mean %.6f",
                        figures["images"], figures["min_cosine"], figures["mean_cosine"])
            if figures["passed"] is False:
                raise EngineBuildError(
                    "the {} engine's embeddings disagree with ONNX Runtime's: min cosine {} < {} "
                    "on {} images ({} and its sidecar, with these figures, were written). Try "
                    "--keep-fp32 attention, or --precision fp32".format(
                        info.precision.upper(), figures["min_cosine"],
                        figures["min_cosine_required"], figures["images"], plan_path))
    return BuildResult(plan_path, json_path, info)
