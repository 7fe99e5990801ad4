"""One benchmark run: which models on which backends, measured through the engines' runners.

A :class:`Target` is a model file plus the runner options for one backend and precision (a
default run on the CPU times every installed runtime: PyTorch, ONNX Runtime, and OpenVINO at fp32
and, where the CPU computes it, bf16); :func:`measure` opens it
with :func:`cvnet.engines.open_engine` (the one inference path every command shares), checks the
batch sizes against what the model accepts, and times each batch network-only and, on request,
end-to-end. :func:`default_targets` prepares the untrained models of a default run (through
:func:`cvnet.benchmarks.models.prepare_model`, which the host install provides as a plugin);
:func:`engine_target` describes a file given with ``--engine`` (no torch for ``.onnx`` and
``.plan``). Device-side: Python 3.6, never imports torch or host code.
"""

import logging
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2

from cvnet.benchmarks.agreement import Agreement, row_fields
from cvnet.benchmarks.report import BenchRow, row_from_stats
from cvnet.benchmarks.stats import latency_stats
from cvnet.benchmarks.timing import time_end_to_end, time_network
from cvnet.core.errors import ConfigError, CVNetError
from cvnet.core.runtimes import (RUNTIME_SUFFIXES, TORCH_RUNTIMES, default_runtime, model_suffix,
                                 opens)
from cvnet.core.synth import sample_images
from cvnet.engines.machine import peak_rss_mb

logger = logging.getLogger(__name__)

#: CLI backend name -> the file suffixes it opens (:data:`cvnet.core.runtimes.RUNTIME_SUFFIXES`).
BACKENDS = RUNTIME_SUFFIXES
#: The CLI backends that run a PyTorch checkpoint.
TORCH_BACKENDS = TORCH_RUNTIMES
#: Side of the synthetic crops used for timing, pixels (resized to the model input).
IMAGE_SIZE = 256
#: Distinct encoded images the end-to-end loop cycles through.
E2E_IMAGES = 16


class Target(NamedTuple):
    """One model on one backend.

    Attributes:
        model: Name in the report (registered name or the sidecar's variant).
        path: The model file.
        backend: CLI backend name (``torch``, ``onnxruntime``, ``tensorrt``).
        device: ``cpu`` or ``cuda``.
        precision: ``fp32`` or ``fp16``.
        options: Keyword options for :func:`cvnet.engines.open_engine`.
        params: Parameters without classifiers, if known.
        gmacs: Billions of MACs per image, if known.
        reference: (model file, CLI backend) of the FP32 reference its agreement figures are
            measured against (:mod:`cvnet.benchmarks.agreement`); None for none.
    """

    model: str
    path: str
    backend: str
    device: str
    precision: str
    options: Dict[str, Any]
    params: Optional[int] = None
    gmacs: Optional[float] = None
    reference: Optional[Tuple[str, str]] = None


class BenchError(ConfigError):
    """A benchmark request the model or machine cannot answer."""


def backend_of_path(path: str) -> str:
    """The CLI backend that opens ``path``, from its suffix.

    Raises:
        BenchError: No backend opens that suffix.
    """
    found = default_runtime(path)
    if found is None:
        raise BenchError("cannot tell the backend of --engine {!r} from its suffix {!r}; "
                         "expected .plan/.engine (tensorrt), .onnx (onnxruntime) or .pt "
                         "(torch)".format(path, model_suffix(path)))
    return found


def runner_options(backend: str, device: str, precision: str, threads: int,
                   input_size: Optional[Tuple[int, int]], arch: Optional[str] = None,
                   batch_max: Optional[int] = None,
                   torch_threads: Optional[int] = None) -> Dict[str, Any]:
    """Options for :func:`cvnet.engines.open_engine` on ``backend``.

    ONNX Runtime on the CPU gets ``threads`` intra-op threads (physical cores unless requested)
    with its default ORT_ENABLE_ALL graph optimisation and sequential execution; PyTorch runs
    under ``torch.inference_mode`` with ``torch_threads`` threads (None lets
    :func:`cvnet.models.threads.configure_torch` decide, see docs/threads.md), with CUDA graphs on a
    GPU unless ``backend`` is ``torch-eager``, and accepts batches up to ``batch_max`` (a
    checkpoint fixes no batch range).
    """
    if backend == "onnxruntime":
        providers = (["CPUExecutionProvider"] if device == "cpu"
                     else ["CUDAExecutionProvider", "CPUExecutionProvider"])
        return {"providers": providers, "threads": threads}
    if backend == "openvino":  # the benchmark measures agreement itself, so every precision runs
        return {"backend": "openvino", "precision": precision, "threads": threads,
                "check_agreement": False}
    if backend in TORCH_BACKENDS:
        options = {"device": device, "half": precision == "fp16", "input_size": input_size,
                   "threads": torch_threads}
        if backend == "torch-eager":
            options["cuda_graphs"] = False
        if arch:
            options["arch"] = arch
        if batch_max:
            options["batch_range"] = (1, int(batch_max))
        return options
    return {}


def check_request(backend: str, device: str, precision: str) -> None:
    """Rejects combinations no backend runs, before anything is exported or loaded.

    Raises:
        BenchError: Naming the combination and what to use instead.
    """
    if backend not in BACKENDS:
        raise BenchError("unknown backend {!r}; expected one of {}".format(
            backend, ", ".join(sorted(BACKENDS))))
    if backend in TORCH_BACKENDS and precision == "fp16" and device == "cpu":
        raise BenchError("PyTorch FP16 needs a GPU; pass --device cuda, or --precision fp32 "
                         "on the CPU")
    if backend == "tensorrt" and device == "cpu":
        raise BenchError("TensorRT runs on a GPU only; pass --device cuda (the default for "
                         ".plan files)")
    if backend == "openvino" and (device != "cpu" or precision == "fp16"):
        raise BenchError("cvnet runs OpenVINO on the CPU at fp32 or bf16; pass --device cpu and "
                         "--precision fp32, bf16 or auto")
    if precision == "bf16" and backend != "openvino":
        raise BenchError("--precision bf16 is OpenVINO's (--backend openvino); {} runs fp32 "
                         "here".format(backend))


def openvino_installed() -> bool:
    """Whether OpenVINO imports here (a default CPU run then times it too)."""
    try:
        from cvnet.engines.ov_runner import openvino_core

        openvino_core()
    except Exception as err:  # not installed, or a broken install: skipped, said at debug level
        logger.debug("OpenVINO not timed: %s", err)
        return False
    return True


def backend_precisions(backend: str, device: str, precision: str) -> List[str]:
    """The precisions ``backend`` is timed at for ``--precision``.

    ``auto`` times each backend at the precisions worth comparing on this device: OpenVINO at
    fp32 and, where the CPU computes it, bf16; every other backend at fp32. An explicit
    precision is timed as it is.
    """
    if precision != "auto":
        return [precision]
    if backend == "openvino" and device == "cpu":
        from cvnet.engines.ov_runner import cpu_supports_bf16, openvino_core

        return ["fp32", "bf16"] if cpu_supports_bf16(openvino_core()) else ["fp32"]
    return ["fp32"]


def artifact_precision(metadata: Any) -> str:
    """The precision a sidecar records: the engine's build precision, else the graph's."""
    from cvnet.engines.metadata import engine_info

    info = engine_info(metadata)
    return info.precision if info is not None else metadata.graph_precision


def check_batches(batches: Sequence[int], batch_min: int, batch_max: int, path: str) -> None:
    """Raises BenchError when a batch size lies outside what the model runs."""
    bad = [b for b in batches if not batch_min <= b <= batch_max]
    if bad:
        raise BenchError("{} runs batches {}..{}, not {}; pass --batch within that range (or "
                         "re-export / rebuild it with a larger batch range)".format(
                             path, batch_min, batch_max, ",".join(str(b) for b in bad)))


def encoded_images(count: int = E2E_IMAGES, size: int = IMAGE_SIZE) -> List[bytes]:
    """Synthetic vehicle crops encoded as JPEG (quality 90), for end-to-end timing."""
    out = []
    for image in sample_images(count, seed=1, size=size):
        ok, data = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
        if not ok:
            raise BenchError("OpenCV cannot encode JPEG here; reinstall opencv")
        out.append(data.tobytes())
    return out


def measure(target: Target, batches: Sequence[int], *, warmup: int, min_time: float,
            e2e: bool = False, jpegs: Optional[Sequence[bytes]] = None,
            agreement: Optional[Agreement] = None) -> List[BenchRow]:
    """Times one target at each batch size: network only and, with ``e2e``, end to end; with
    ``agreement``, its figures against its reference, measured at each batch size, go into that
    batch's rows (none for the reference itself, :func:`is_own_reference`).

    Raises:
        BenchError: A batch size the model does not run (checked before any timing).
        EngineLoadError, MetadataError, MissingDependencyError: From opening the model.
    """
    from cvnet.engines import open_engine

    rows = []
    with open_engine(target.path, **target.options) as runner:
        sync, gpu_memory = runner.synchronize, runner.peak_gpu_memory_mb
        spec = runner.spec
        check_batches(batches, spec.batch_min, spec.batch_max, target.path)
        params = target.params
        if params is None and runner.metadata is not None:
            params = runner.metadata.param_count
        precision = target.precision
        model = target.model
        if runner.metadata is not None:
            model = model or runner.metadata.variant
            if not target.model:  # a file given with --engine: report what it was built as
                precision = artifact_precision(runner.metadata)
        images = sample_images(max(batches), seed=0, size=IMAGE_SIZE)
        if e2e and jpegs is None:
            jpegs = encoded_images()
        precision = getattr(runner, "precision", None) or precision  # OpenVINO's, as computed
        common = dict(model=model, backend=runner.backend, device=target.device,
                      precision=precision, params=params, gmacs=target.gmacs)
        if is_own_reference(target):  # agrees with itself by construction: no figures, no win
            logger.info("%s %s: the agreement reference itself, no figures", target.path,
                        target.backend)
            agreement = None
        for batch in batches:
            fields = {}  # type: Dict[str, Any]
            if agreement is not None:  # per batch: a runtime may pick other kernels per batch
                fields = row_fields(agreement.figures(target.reference, runner, batch),
                                    precision)
            prepared = runner.prepare(images[:batch])
            logger.info("%s %s %s batch %d: network only, >= %.1f s", model, runner.backend,
                        precision, batch, min_time)
            times = time_network(runner, prepared, warmup=warmup, min_time=min_time, sync=sync)
            rows.append(row_from_stats(latency_stats(times, batch), mode="network",
                                       peak_rss_mb=peak_rss_mb(), gpu_mem_mb=gpu_memory(),
                                       **dict(common, **fields)))
            if e2e:
                logger.info("%s %s %s batch %d: end to end from JPEG", model, runner.backend,
                            precision, batch)
                times = time_end_to_end(runner, jpegs, batch, warmup=warmup, min_time=min_time,
                                        sync=sync)
                rows.append(row_from_stats(latency_stats(times, batch), mode="e2e",
                                           peak_rss_mb=peak_rss_mb(), gpu_mem_mb=gpu_memory(),
                                           **dict(common, **fields)))
    return rows


def engine_target(path: str, *, backend: Optional[str], device: Optional[str], precision: str,
                  threads: int, input_size: Optional[Tuple[int, int]], arch: Optional[str],
                  batch_max: int, torch_threads: Optional[int] = None) -> Target:
    """The target for a file given with ``--engine``.

    Args:
        input_size: A ``.pt`` file's input size; None: the size it was trained at (the
            runner decides, :func:`cvnet.models.checkpoint.resolve_input_size`).
        batch_max: The largest batch the run asks for (a ``.pt`` file runs any).

    Raises:
        BenchError: The file is missing, or ``backend`` disagrees with its suffix.
    """
    if not os.path.isfile(path):
        raise BenchError("--engine {}: no such file; give the .plan, .onnx or .pt file to "
                         "benchmark (cvnet-export and cvnet-build write them)".format(path))
    found = backend_of_path(path)
    if backend is not None and opens(backend, path):
        found = backend  # torch-eager runs .pt files too
    elif backend is not None:
        raise BenchError("--backend {} cannot run {} (a {} file); drop --backend or pass the "
                         "matching file".format(backend, path, found))
    device = device or ("cuda" if found == "tensorrt" else "cpu")
    check_request(found, device, precision)
    return Target(model="", path=path, backend=found, device=device, precision=precision,
                  options=runner_options(found, device, precision, threads, input_size, arch,
                                         batch_max, torch_threads),
                  reference=reference_of_file(path, found))


def is_own_reference(target: Target) -> bool:
    """Whether ``target`` is its agreement reference run again (the same file on the same runtime
    at fp32): its figures would be perfect by construction."""
    return target.reference == (target.path, target.backend) and target.precision == "fp32"


def graph_precision(path: str) -> Optional[str]:
    """The graph precision a model file's sidecar records (``fp32``, ``fp16``); None without
    a readable sidecar."""
    from cvnet.core.artifact import read_sidecar, sidecar_path

    try:
        return read_sidecar(sidecar_path(path)).graph_precision
    except CVNetError:  # no sidecar, or one the runner will refuse (with its own message)
        return None


def reference_of_file(path: str, backend: str) -> Optional[Tuple[str, str]]:
    """The FP32 reference of a file given with ``--engine``: the checkpoint itself in eager
    PyTorch, an FP32 ``.onnx`` in ONNX Runtime (the export verified it against PyTorch); None
    for an ``.onnx`` whose sidecar records another graph precision (an FP16 graph has no FP32
    reference here) and for a TensorRT engine (cvnet-build measured its parity)."""
    if backend in TORCH_BACKENDS:
        return (path, "torch-eager")
    if backend in ("onnxruntime", "openvino"):
        recorded = graph_precision(path)
        if recorded not in (None, "fp32"):
            logger.warning("%s is an %s graph: there is no FP32 reference for it here, so its "
                           "rows get no agreement figures (benchmark its FP32 export to have "
                           "them)", path, recorded)
            return None
        return (path, "onnxruntime")
    return None


def engine_targets(path: str, *, backends: Optional[Sequence[str]], device: Optional[str],
                   precision: str, **options: Any) -> List[Target]:
    """The targets of a file given with ``--engine``: one per backend and precision.

    Without ``backends``: the runtime its suffix names and, for an ``.onnx`` file on the CPU,
    OpenVINO too where it is installed. ``auto`` expands as :func:`backend_precisions` says (a
    ``.plan`` is reported at the precision it was built with).

    Raises:
        BenchError: As :func:`engine_target`.
    """
    # the first target tells the file's own runtime and device; bf16 without --backend is
    # OpenVINO's (below), so the file's own runtime (ONNX Runtime) is asked at fp32
    own = "fp32" if precision == "auto" or (precision == "bf16" and not backends) else precision
    first = engine_target(path, backend=backends[0] if backends else None, device=device,
                          precision=own, **options)
    chosen = list(backends or [first.backend])
    if (not backends and first.backend == "onnxruntime" and first.device == "cpu"
            and precision in ("auto", "fp32", "bf16") and openvino_installed()):
        chosen.append("openvino")
    if precision == "bf16" and not backends:
        chosen = ["openvino"]
    targets = []
    for backend in chosen:
        for each in backend_precisions(backend, first.device, precision):
            targets.append(engine_target(path, backend=backend, device=device, precision=each,
                                         **options))
    return targets


def default_targets(archs: Sequence[str], backends: Sequence[str], *, device: str,
                    precision: str, threads: int, input_size: Tuple[int, int], batch_max: int,
                    cache: Optional[str], torch_threads: Optional[int] = None) -> List[Target]:
    """Untrained models prepared in the cache, one target per (model, backend, precision); needs
    the host.

    The ONNX export is made only when ONNX Runtime or OpenVINO is among ``backends``, for
    batches 1..``batch_max`` (the largest the run asks for); a PyTorch-only run exports nothing.
    ONNX Runtime runs the graph exported for it (``--optimize-for onnxruntime``, an FP32 run),
    OpenVINO and TensorRT the graph as exported.
    ``precision`` ``auto`` times each backend as :func:`backend_precisions` says. Every target's
    agreement reference is the checkpoint in eager PyTorch FP32 on the CPU.

    Raises:
        BenchError: TensorRT was asked for (it needs an engine built on the device).
        MissingDependencyError: torch is missing (on a device, pass ``--engine``).
    """
    from cvnet.benchmarks.models import prepare_model

    plans = [(backend, each) for backend in backends
             for each in backend_precisions(backend, device, precision)]
    for backend, each in plans:
        check_request(backend, device, each)
        if backend == "tensorrt":
            raise BenchError("a default run does not build TensorRT engines; build one with "
                             "cvnet-build cvnet.onnx and pass --engine cvnet.plan")
    targets = []
    onnx = "onnxruntime" in backends or "openvino" in backends
    for arch in archs:
        prepared = prepare_model(arch, input_size=input_size, batch_max=batch_max,
                                 half=precision == "fp16" and onnx, onnx=onnx,
                                 ort_graph="onnxruntime" in backends, cache=cache)
        for backend, each in plans:
            path = prepared.checkpoint if backend in TORCH_BACKENDS else prepared.onnx
            if backend == "onnxruntime" and prepared.ort_onnx:  # each runtime its best graph
                path = prepared.ort_onnx
            targets.append(Target(
                model=arch, path=path, backend=backend, device=device, precision=each,
                options=runner_options(backend, device, each, threads, input_size, arch,
                                       batch_max, torch_threads),
                params=prepared.params, gmacs=prepared.gmacs,
                reference=(prepared.checkpoint, "torch-eager")))
    return targets
