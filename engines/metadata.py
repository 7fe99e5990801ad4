"""The plan sidecar's ``engine`` block: one record, one accessor, one compatibility check.

``cvnet.plan.json`` is the ONNX sidecar's content with ``artifact_type: "plan"``, ``file:
"cvnet.plan"`` and one more key, ``"engine"``, holding what the build did::

    "engine": {"precision": "fp16", "tensorrt_version": "8.2.1.8",
               "gpu_name": "NVIDIA Tegra X1", "compute_capability": "5.3",
               "batch_min": 1, "batch_opt": 8, "batch_max": 8, "dynamic_batch": true,
               "workspace_bytes": 536870912, "build_time_s": 412.3,
               "timing_cache": "timing.cache", "keep_fp32": ["attention"],
               "fp32_layers": ["/stages.0/stages.0.0/filters.1/MatMul", ...],
               "onnx_sha256": "...", "plan_sha256": "...", "parity": {...} or null,
               "int8_calibration": null, "builder": "cvnet-build 0.1.0",
               "created": "2026-05-09T07:35:25+00:00"}

:mod:`cvnet.core.artifact` keeps keys it does not know in ``extra``, so the block reaches device
code unchanged; :func:`engine_info` is the only place that reads it.
"""

import datetime
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from cvnet.core.artifact import ArtifactMetadata
from cvnet.core.errors import MetadataError
from cvnet.engines.errors import EngineCompatibilityError
from cvnet.engines.gpu import GpuInfo
from cvnet.engines.trt_compat import same_tensorrt_release

ENGINE_KEY = "engine"
PLAN_ARTIFACT_TYPE = "plan"
PRECISIONS = ("fp32", "fp16", "int8")


class EngineInfo(NamedTuple):
    """What a TensorRT build produced, as recorded in the plan's sidecar.

    Attributes:
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: what the engine was built to use.
        tensorrt_version: TensorRT version that built the plan, e.g. ``"8.2.1.8"``.
        gpu_name: GPU the plan was built on.
        compute_capability: That GPU's compute capability, ``"major.minor"``.
        batch_min: Smallest batch the engine accepts.
        batch_opt: Batch the profile was optimised for.
        batch_max: Largest batch the engine accepts.
        dynamic_batch: Whether the batch axis is dynamic (an optimisation profile exists).
        workspace_bytes: Builder workspace limit, bytes.
        build_time_s: Wall time of parsing and building, seconds.
        timing_cache: File name of the timing cache used, or None.
        keep_fp32: Layer groups pinned to FP32, e.g. ``("attention",)``.
        fp32_layers: Names of the layers actually pinned to FP32.
        onnx_sha256: SHA-256 of the ONNX file the plan was built from.
        plan_sha256: SHA-256 of the plan file.
        parity: Embedding agreement with ONNX Runtime measured after the build, or None.
        int8_calibration: How INT8 was calibrated (images, batch, cache), or None.
        builder: Tool and version that built it.
        created: UTC time of the build, ISO 8601.
    """

    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    batch_min: int
    batch_opt: int
    batch_max: int
    dynamic_batch: bool
    workspace_bytes: int
    build_time_s: float
    timing_cache: Optional[str] = None
    keep_fp32: Tuple[str, ...] = ()
    fp32_layers: Tuple[str, ...] = ()
    onnx_sha256: Optional[str] = None
    plan_sha256: Optional[str] = None
    parity: Optional[Dict[str, Any]] = None
    int8_calibration: Optional[Dict[str, Any]] = None
    builder: str = ""
    created: str = ""

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object stored under ``"engine"``."""
        data = self._asdict()
        data["keep_fp32"] = list(self.keep_fp32)
        data["fp32_layers"] = list(self.fp32_layers)
        return data


_REQUIRED = tuple(name for name in EngineInfo._fields if name not in EngineInfo._field_defaults)


def utc_now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now.isoformat()


def engine_info(metadata: ArtifactMetadata) -> Optional[EngineInfo]:
    """Reads the ``engine`` block of a sidecar; None when it has none (an ONNX sidecar).

    Raises:
        MetadataError: The block is present but malformed; the message names the problem.
    """
    block = (metadata.extra or {}).get(ENGINE_KEY)
    if block is None:
        return None
    source = "{} sidecar's {!r} block".format(metadata.file, ENGINE_KEY)
    if not isinstance(block, dict):
        raise MetadataError("{} is {}, expected an object; rebuild with cvnet-build".format(
            source, type(block).__name__))
    missing = [name for name in _REQUIRED if name not in block]
    if missing:
        raise MetadataError("{} lacks {}; rebuild with cvnet-build".format(
            source, ", ".join(missing)))
    if block["precision"] not in PRECISIONS:
        raise MetadataError("{}: precision is {!r}, expected one of {}".format(
            source, block["precision"], ", ".join(PRECISIONS)))
    known = {name: block[name] for name in EngineInfo._fields if name in block}
    known["keep_fp32"] = tuple(known.get("keep_fp32") or ())
    known["fp32_layers"] = tuple(known.get("fp32_layers") or ())
    try:
        return EngineInfo(**known)
    except TypeError as err:
        raise MetadataError("{} is malformed ({})".format(source, err))


def plan_sidecar(onnx_metadata: ArtifactMetadata, plan_file: str, info: EngineInfo) -> Dict[str, Any]:
    """The plan's sidecar object: the ONNX sidecar's keys plus the ``engine`` block.

    ``artifact_type``, ``file`` and the batch range are the plan's; the rest (input, mean/std,
    embedding size, hashes of the weights and of the ONNX) is the ONNX sidecar's, unchanged.
    """
    data = onnx_metadata.to_dict()
    data.update(artifact_type=PLAN_ARTIFACT_TYPE, file=plan_file, batch_min=info.batch_min,
                batch_max=info.batch_max, dynamic_batch=info.dynamic_batch)
    data[ENGINE_KEY] = info.to_dict()
    return data


def compatibility_problems(info: EngineInfo, tensorrt_version: str, gpu: Optional[GpuInfo],
                           allow_other_gpu: bool = False) -> List[str]:
    """What stops a plan recorded as ``info`` from loading here (empty: nothing).

    Args:
        info: The plan's engine block.
        tensorrt_version: The installed TensorRT's version.
        gpu: The GPU it would run on; None when it could not be queried (not compared then).
        allow_other_gpu: Accept a GPU of another name if its compute capability is the same
            (TensorRT loads such a plan with a warning; it may run slower).
    """
    problems = []
    if not same_tensorrt_release(info.tensorrt_version, tensorrt_version):
        problems.append("it was built with TensorRT {}, this machine has TensorRT {}".format(
            info.tensorrt_version, tensorrt_version))
    if gpu is not None:
        if info.compute_capability != gpu.compute_capability:
            problems.append("it was built on {} (compute capability {}), this GPU is {} (compute "
                            "capability {})".format(info.gpu_name, info.compute_capability,
                                                    gpu.name, gpu.compute_capability))
        elif info.gpu_name != gpu.name and not allow_other_gpu:
            problems.append("it was built on {}, this GPU is {} (same compute capability {}: "
                            "pass allow_other_gpu=True to try it anyway)".format(
                                info.gpu_name, gpu.name, gpu.compute_capability))
    return problems


def check_compatible(plan_path: str, info: EngineInfo, tensorrt_version: str,
                     gpu: Optional[GpuInfo], allow_other_gpu: bool = False) -> None:
    """Refuses a plan built for another TensorRT release or GPU, before TensorRT sees it.

    Raises:
        EngineCompatibilityError: Naming both versions/GPUs and saying to rebuild.
    """
    problems = compatibility_problems(info, tensorrt_version, gpu, allow_other_gpu)
    if problems:
        raise EngineCompatibilityError(
            "{} cannot run here: {}. A TensorRT plan only loads on the TensorRT release and GPU "
            "that built it: rebuild with cvnet-build on this machine (cvnet-build "
            "path/to/model.onnx)".format(plan_path, "; ".join(problems)))
