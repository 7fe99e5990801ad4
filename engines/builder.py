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
5. measure embedding parity with ONNX Runtime on the GPU that built it, and record it.

Every TensorRT API difference goes through :mod:`cvnet.engines.trt_compat`; TensorRT's own messages
go to the ``tensorrt`` logger (:func:`cvnet.engines.trt_compat.make_logger`).
"""

import contextlib
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

import cvnet
from cvnet.core.artifact import (ArtifactMetadata, check_artifact_file, read_sidecar, sidecar_path,
                            sidecar_text)
from cvnet.core.errors import ConfigError
from cvnet.core.fileio import (check_writable, sha256_bytes, sha256_file, write_bytes_atomic,
                          write_files_atomic, write_text_atomic)
from cvnet.core.tensorrt_ops import operator_support
from cvnet.engines import gpu, trt_compat
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineBuildError, MissingDependencyError
from cvnet.engines.gpu import GpuInfo
from cvnet.engines.metadata import EngineInfo, plan_sidecar, utc_now

logger = logging.getLogger(__name__)

#: Builder scratch memory. The Nano shares 4 GB between CPU and GPU; 256 MiB-1 GiB is the usual
#: range there, and TensorRT 8.2's default is 0 (no tactic gets any scratch memory).
DEFAULT_WORKSPACE_MIB = 512
#: Batch the optimisation profile is tuned for unless told otherwise: a few crops per frame.
DEFAULT_OPT_BATCH = 8
#: Timing cache file name, in the plan's folder, unless told otherwise.
DEFAULT_TIMING_CACHE = "timing.cache"
#: Layer groups ``--keep-fp32`` can pin.
KEEP_FP32_GROUPS = ("attention",)
#: Parity with ONNX Runtime (min per-image cosine) an engine must reach, by precision; INT8 is
#: reported, not judged.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999}
#: Seconds between "still building" log lines.
HEARTBEAT_S = 30.0


class BuildOptions(NamedTuple):
    """How to build (``cvnet-build``'s options, one to one).

    Attributes:
        fp16: Build FP16 where possible (the default); False for FP32.
        batch: (min, opt, max) batch of the optimisation profile; by default the sidecar's
            batch_min : min(8, batch_max) : batch_max.
        workspace_mib: Builder workspace limit, MiB.
        timing_cache: Timing cache file; ``""`` for ``timing.cache`` next to the plan, None for
            none.
        keep_fp32: Layer groups to pin to FP32 in an FP16 build (``"attention"``).
        int8: Build INT8 with entropy calibration (TensorRT 8.x-10.x on GPUs with fast INT8).
        calib_dir: Folder of calibration images (searched recursively).
        calib_cache: Calibration cache file; by default ``<plan>.calib`` next to the plan.
        calib_images: Most calibration images used.
        verify_images: Images for the parity check against ONNX Runtime; 0 to skip.
        device: CUDA device ordinal.
        verbose: TensorRT logs at VERBOSE.
    """

    fp16: bool = True
    batch: Optional[Tuple[int, int, int]] = None
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: Optional[str] = ""
    keep_fp32: Tuple[str, ...] = KEEP_FP32_GROUPS
    int8: bool = False
    calib_dir: Optional[str] = None
    calib_cache: Optional[str] = None
    calib_images: int = 512
    verify_images: int = 8
    device: int = 0
    verbose: bool = False


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
# Pure decisions (tested without TensorRT)


def parse_batch(text: str) -> Tuple[int, int, int]:
    """``"MIN:OPT:MAX"``, ``"MIN:MAX"`` (opt = max) or ``"N"`` -> (min, opt, max).

    Raises:
        ConfigError: Not numbers, or not 1 <= min <= opt <= max.
    """
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 3
    elif len(parts) == 2:
        parts = [parts[0], parts[1], parts[1]]
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ConfigError("--batch {!r}: expected MIN:OPT:MAX (or MIN:MAX, or N) with "
                          "1 <= MIN <= OPT <= MAX, e.g. 1:8:32".format(text))
    return parts[0], parts[1], parts[2]


def default_batch(metadata: Optional[ArtifactMetadata]) -> Tuple[int, int, int]:
    """The profile's (min, opt, max) when none is given: the sidecar's range, tuned for 8."""
    low, high = (metadata.batch_min, metadata.batch_max) if metadata else (1, 32)
    return low, max(low, min(DEFAULT_OPT_BATCH, high)), high


def profile_shapes(input_name: str, shape: Sequence[int],
                   batch: Optional[Tuple[int, int, int]],
                   metadata: Optional[ArtifactMetadata]) -> Optional[Tuple[Tuple[int, ...], ...]]:
    """The optimisation profile's (min, opt, max) input shapes; None for a static batch.

    Args:
        input_name: The network input.
        shape: Its shape in the network; -1 for dynamic dimensions.
        batch: The requested (min, opt, max) batch, or None for :func:`default_batch`.
        metadata: The ONNX sidecar; dynamic image dimensions (other than the batch) are filled
            from its size.

    Raises:
        EngineBuildError: A non-batch dimension is dynamic and there is no sidecar to fill it.
    """
    dims = [int(d) for d in shape]
    if dims[0] >= 0:
        if batch is not None and tuple(batch) != (dims[0],) * 3:
            logger.warning("%s has a static batch of %d; the engine runs exactly that (the batch "
                           "option is ignored)", input_name, dims[0])
        return None
    rest = dims[1:]
    if any(d < 0 for d in rest):
        if metadata is None or len(rest) != 3:
            raise EngineBuildError(
                "input {!r} has dynamic dimensions {} besides the batch and there is no sidecar "
                "giving the image size; export with a fixed size (cvnet-export --imgsz)".format(
                    input_name, tuple(dims)))
        size = ((3, metadata.input_height, metadata.input_width)
                if metadata.input_layout == "NCHW"
                else (metadata.input_height, metadata.input_width, 3))
        rest = [s if d < 0 else d for d, s in zip(rest, size)]
    return tuple((b,) + tuple(rest) for b in (batch or default_batch(metadata)))


def decide_precision(fp16_mode: str, want_fp16: bool,
                     graph_precision: Optional[str]) -> Tuple[str, bool, Optional[str]]:
    """What precision an engine gets, whether to set the FP16 flag, and what to warn.

    Args:
        fp16_mode: :func:`cvnet.engines.trt_compat.fp16_mode`'s answer.
        want_fp16: FP16 was asked for (the default; ``--fp32`` turns it off).
        graph_precision: The ONNX sidecar's ``graph_precision`` (``"fp16"`` after
            ``cvnet-export --half``), or None without a sidecar.

    Returns:
        (``"fp16"`` or ``"fp32"``, set the FP16 builder flag, warning or None).
    """
    if fp16_mode == trt_compat.FP16_FROM_ONNX_TYPES:
        if graph_precision == "fp16":
            if not want_fp16:
                return "fp16", False, ("--fp32 has no effect here: this TensorRT has no FP16 "
                                       "builder flag and follows the ONNX types, which are FP16; "
                                       "export without --half for an FP32 engine")
            return "fp16", False, None
        if not want_fp16:
            return "fp32", False, None
        reason = ("its sidecar says the graph is FP32" if graph_precision == "fp32"
                  else "without a sidecar its precision is unknown, so FP32 is recorded")
        return "fp32", False, ("this TensorRT has no FP16 builder flag (removed in 11.x): the "
                               "engine takes the ONNX's types and will be FP32 ({}); re-export "
                               "with cvnet-export --half for an FP16 engine".format(reason))
    if not want_fp16:
        return "fp32", False, None
    if fp16_mode == trt_compat.FP16_NOT_FAST:
        return "fp32", False, ("this GPU has no fast FP16 (platform_has_fast_fp16 is False): "
                               "building FP32 instead")
    return "fp16", True, None


def attention_layers(layers: Sequence[trt_compat.LayerSummary]) -> List[str]:
    """Names of the layers of CVNet's channel attention (filtration op A), to pin to FP32.

    The ONNX parser names each layer after its ONNX node, and the TorchScript exporter names a
    node after its module path (``/stages.0/stages.0.0/filters.1/MatMul``). An attention module
    is a scope holding both a MatMul and a Softmax (the energy ``X1 X2^T`` and its softmax; the
    collaboration module's Softmax has no MatMul beside it). Every layer of such a scope with
    floating-point outputs is selected: the energy's MatMul, transposes, ReduceMax, the
    subtraction, Softmax, and the products with the values, since any of them in FP16 would see
    the energy's range (it sums H*W products, 4096 at stage 1 of a 256x256 input).
    """
    def scope(name: str) -> Optional[str]:
        return name.rsplit("/", 1)[0] if "/" in name else None

    kinds = defaultdict(set)
    for layer in layers:
        if scope(layer.name):
            kinds[scope(layer.name)].add(layer.type)
    scopes = {s for s, types in kinds.items() if {"MATRIX_MULTIPLY", "SOFTMAX"} <= types}
    return [layer.name for layer in layers
            if scope(layer.name) in scopes and layer.float_outputs and layer.type != "CONSTANT"]


def check_opset(metadata: Optional[ArtifactMetadata], tensorrt_version: str, onnx_path: str) -> None:
    """Fails early when the sidecar's opset is newer than this TensorRT's parser reads.

    Raises:
        EngineBuildError: Naming the opset, the parser's maximum and the re-export to do.
    """
    if metadata is None:
        return
    try:
        support = operator_support(tensorrt_version)
    except ConfigError:
        return  # a version older than every list: let the parser speak
    if metadata.opset > support.max_opset:
        raise EngineBuildError(
            "{} is opset {}, but TensorRT {}'s ONNX parser reads opsets up to {}; re-export it "
            "with cvnet-export --opset {} --trt-version {}".format(
                onnx_path, metadata.opset, tensorrt_version, support.max_opset,
                support.max_opset, support.version))


def synthetic_images(count: int, seed: int = 0) -> List[np.ndarray]:
    """``count`` BGR uint8 images of varied sizes for the parity check: gradients plus noise."""
    rng = np.random.RandomState(seed)
    images = []
    for _ in range(count):
        height, width = (int(v) for v in rng.randint(48, 257, size=2))
        ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        colour = rng.uniform(0, 255, size=(1, 1, 3)).astype(np.float32)
        noise = rng.normal(0, 40, size=(height, width, 3)).astype(np.float32)
        images.append(np.clip(colour * ramp + noise + 60, 0, 255).astype(np.uint8))
    return images


def parity(reference: np.ndarray, engine: np.ndarray, precision: str) -> Dict[str, Any]:
    """Per-image agreement of engine embeddings with reference ones, (N, D) each."""
    dot = np.sum(reference * engine, axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(engine, axis=1)
    cosine = dot / np.maximum(norms, 1e-12)
    threshold = MIN_COSINE.get(precision)
    return {"reference": "onnxruntime (CPU provider)", "images": int(len(reference)),
            "min_cosine": round(float(cosine.min()), 6),
            "mean_cosine": round(float(cosine.mean()), 6),
            "max_abs_diff": float(np.abs(reference - engine).max()),
            "min_cosine_required": threshold,
            "passed": None if threshold is None else bool(cosine.min() >= threshold)}


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

    TensorRT builds on the current CUDA device, so the device's primary context is made current
    on this thread for the whole build (:func:`cvnet.engines.gpu.primary_context`), and every TensorRT
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
    check_opset(metadata, trt_compat.tensorrt_version(trt), onnx_path)
    device = gpu.gpu_info(options.device)
    if options.int8 and onnx_sha256 is None:
        onnx_sha256 = sha256_file(onnx_path)
    with gpu.primary_context(options.device):
        return _build(trt, device, onnx_path, options, metadata, timing_cache, calib_cache,
                      onnx_sha256 or "")


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
                        "per-layer precision); cvnet-export --half already keeps attention FP32")
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

    images = synthetic_images(count)
    with OrtRunner(onnx_path, providers=["CPUExecutionProvider"]) as reference:
        expected = reference.embed(images)
    with TrtRunner(plan_path, device=device) as engine:
        actual = engine.embed(images)
    return parity(expected, actual, precision)


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
        raise ConfigError("--int8 needs --calib DIR, a folder of representative images")
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
                    "--keep-fp32 attention, or --fp32".format(
                        info.precision.upper(), figures["min_cosine"],
                        figures["min_cosine_required"], figures["images"], plan_path))
    return BuildResult(plan_path, json_path, info)
