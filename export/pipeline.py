"""What ``cvnet-export`` does: checkpoint -> verified ONNX file + sidecar, or nothing at all.

Order of work, so that a bad request fails before the expensive steps and a failed export leaves
no file behind:

1. check the options and the output path;
2. load the checkpoint (``weights_only=True``) or build a random-init model, in eval mode, and run
   one forward at the export size;
3. wrap the model for FP16 and/or in-graph preprocessing, export in memory, check the graph with
   ``onnx.checker`` and against the target TensorRT's operator list; with ``--optimize-for
   onnxruntime``, rewrite the graph for ONNX Runtime's CPU provider (:mod:`cvnet.export.ort_graph`)
   and check again;
4. verify with ONNX Runtime against the FP32 PyTorch model (unless told not to), and with
   OpenVINO at each precision it computes here when asked (``--verify-backend openvino``);
5. write the metadata into the graph's ``metadata_props``, then the ONNX file and the sidecar,
   both complete in temporary files before either is renamed into place.
"""

import dataclasses
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import onnx
import torch
import torch.nn as nn

import cvnet
from cvnet.core.artifact import (FORMAT, FORMAT_VERSION, IN_GRAPH, ArtifactMetadata, sidecar_path,
                                 sidecar_text, to_metadata_props)
from cvnet.core.errors import ConfigError, VerificationError
from cvnet.core.fileio import check_writable, sha256_bytes, write_files_atomic
from cvnet.core.parity import record_summary, verification_images
from cvnet.core.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from cvnet.core.tensorrt_ops import (JETSON_NANO_TENSORRT, UINT8_INPUT_MIN_TENSORRT,
                                     supports_uint8_input)
from cvnet.models.threads import configure_torch
from cvnet.export.defaults import DEFAULT_DYNAMIC_BATCH, DEFAULT_IMAGE_COUNT, DEFAULT_OPSET
from cvnet.export.graph_preprocess import InGraphPreprocess
from cvnet.export.half import half_for_export
from cvnet.export.onnx_export import (EXPORTER, INPUT_NAME, OUTPUT_NAME, check_export_opset,
                                      check_tensorrt_support, graph_opset, onnx_from_module,
                                      set_metadata_props)
from cvnet.export.ort_graph import TARGETS as OPTIMIZE_TARGETS
from cvnet.export.ort_graph import optimize_for_onnxruntime
from cvnet.export.verify import (VerificationReport, openvino_precisions, verification_batches,
                                 verify_onnx, verify_openvino)
from cvnet.models.checkpoint import (model_from_checkpoint, resolve_input_size, state_dict_sha256,
                                    trained_input_size)
from cvnet.models.registry import build_model, list_models
from cvnet.models.summary import param_count

logger = logging.getLogger(__name__)

#: Runtimes the export's check runs on (ONNX Runtime always, when verifying).
VERIFY_BACKENDS = ("onnxruntime", "openvino")


@dataclass
class ExportOptions:
    """Everything ``cvnet-export`` can be asked for (the CLI's options, one to one).

    Attributes:
        output: The ``.onnx`` file to write; the sidecar goes next to it.
        arch: Registered model name; required for plain state_dicts and ``random_init``.
        model_kwargs: Constructor options on top of the checkpoint's.
        random_init: Export an untrained model (benchmarking); no checkpoint is read.
        opset: ONNX opset.
        trt_version: TensorRT version the graph must parse in (operator list, max opset, uint8).
        batch: Static batch size, or None for a dynamic batch axis.
        dynamic_batch: (min, max) batch recorded for a dynamic graph (engine profiles use it).
        input_size: (height, width) in pixels; None: the size the checkpoint was trained at
            (its config's ``img_size``), else 256x256. A size other than the trained one is
            exported with a warning naming both.
        preprocess_in_graph: The graph takes RGB pixels NHWC and normalises them itself.
        input_dtype: With ``preprocess_in_graph``: ``"uint8"`` or ``"float32"``; None picks
            uint8 where the target TensorRT accepts uint8 inputs (8.5+), float32 otherwise.
        half: Export an FP16-typed graph (attention and I/O in FP32).
        verify: Compare ONNX Runtime with PyTorch before writing anything.
        verify_images: Number of images verification uses.
        optimize_for: ``"any"`` (the graph as exported) or ``"onnxruntime"`` (channel
            reductions on channels-last rows, broadcasts spread to equal shapes, spatial means
            as GlobalAveragePool, with the shapes kept: the activations stay in ONNX Runtime's
            NCHWc layout; :mod:`cvnet.export.ort_graph`). The sidecar records it.
        verify_backends: Runtimes checked besides ONNX Runtime: ``("openvino",)`` checks
            OpenVINO at fp32 and, where this CPU computes it, bf16; an FP32 failure stops the
            export, a BF16 one is recorded (the OpenVINO runner then refuses bf16).
        seed: Seed of the verification images and of ``random_init`` weights.
    """

    output: str = "cvnet.onnx"
    arch: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    random_init: bool = False
    opset: int = DEFAULT_OPSET
    trt_version: str = JETSON_NANO_TENSORRT
    batch: Optional[int] = None
    dynamic_batch: Tuple[int, int] = DEFAULT_DYNAMIC_BATCH
    input_size: Optional[Tuple[int, int]] = None
    preprocess_in_graph: bool = False
    input_dtype: Optional[str] = None
    half: bool = False
    verify: bool = True
    verify_images: int = DEFAULT_IMAGE_COUNT
    optimize_for: str = "any"
    verify_backends: Tuple[str, ...] = ()
    seed: int = 0


@dataclass
class ExportResult:
    """What an export wrote and measured.

    Attributes:
        onnx_path: The ONNX file.
        sidecar_path: Its sidecar.
        metadata: The sidecar's content.
        verification: The parity report, or None with ``verify=False``.
        export_seconds: Wall time of loading, exporting and writing (verification excluded).
    """

    onnx_path: str
    sidecar_path: str
    metadata: ArtifactMetadata
    verification: Optional[VerificationReport]
    export_seconds: float


def _resolve_input_dtype(options: ExportOptions) -> str:
    """The graph's input dtype, checked against the target TensorRT."""
    if not options.preprocess_in_graph:
        if options.input_dtype is not None:
            raise ConfigError(f"--input-dtype {options.input_dtype} needs --preprocess-in-graph; "
                              "without it the graph always takes normalised float32 NCHW")
        return "float32"
    if options.input_dtype is None:
        if supports_uint8_input(options.trt_version):
            return "uint8"
        logger.warning("TensorRT %s has no uint8 network inputs (they arrived in %s), so the "
                       "in-graph preprocessing takes float32 NHWC RGB pixel values 0-255: the "
                       "device passes resize_rgb(image).astype(np.float32). Pass --trt-version "
                       "%s or newer for a uint8 input.", options.trt_version,
                       UINT8_INPUT_MIN_TENSORRT, UINT8_INPUT_MIN_TENSORRT)
        return "float32"
    if options.input_dtype == "uint8" and not supports_uint8_input(options.trt_version):
        raise ConfigError(f"TensorRT {options.trt_version} cannot take a uint8 input (uint8 "
                          f"network inputs arrived in TensorRT {UINT8_INPUT_MIN_TENSORRT}); use "
                          f"--input-dtype float32 for it, or --trt-version "
                          f"{UINT8_INPUT_MIN_TENSORRT} or newer")
    if options.input_dtype not in ("uint8", "float32"):
        raise ConfigError(f"--input-dtype must be uint8 or float32, got {options.input_dtype!r}")
    return options.input_dtype


def check_options(options: ExportOptions) -> str:
    """Checks the options that need no model; returns the resolved input dtype.

    Raises:
        ConfigError: An option is out of range or contradicts another.
        ExportError: The installed exporter cannot write the opset.
    """
    if options.batch is not None and options.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {options.batch}")
    low, high = options.dynamic_batch
    if not 1 <= low <= high:
        raise ConfigError(f"--dynamic-batch must be MIN:MAX with 1 <= MIN <= MAX, got {low}:{high}")
    if options.input_size is not None and min(options.input_size) < 1:
        raise ConfigError(f"--input-size must be positive, got "
                          f"{options.input_size[0]}x{options.input_size[1]}")
    if options.verify and options.verify_images < 2:
        raise ConfigError(f"--verify-images must be >= 2 (retrieval agreement needs a gallery), "
                          f"got {options.verify_images}")
    if options.optimize_for not in OPTIMIZE_TARGETS:
        raise ConfigError(f"--optimize-for must be one of {', '.join(OPTIMIZE_TARGETS)}, got "
                          f"{options.optimize_for!r}")
    if options.optimize_for == "onnxruntime" and options.half:
        raise ConfigError("--optimize-for onnxruntime rewrites FP32 graphs (ONNX Runtime's CPU "
                          "provider computes FP32); drop --precision fp16")
    unknown = [name for name in options.verify_backends if name not in VERIFY_BACKENDS]
    if unknown:
        raise ConfigError(f"--verify-backend {','.join(unknown)}: the check runs on "
                          f"{' and '.join(VERIFY_BACKENDS)} only")
    if "openvino" in options.verify_backends and not options.verify:
        raise ConfigError("--verify-backend openvino checks the graph, and --no-verify skips "
                          "the checks: pass one of them")
    if options.random_init and options.arch is None:
        raise ConfigError(f"--random-init needs --arch NAME (one of: {', '.join(list_models())})")
    check_export_opset(options.opset, options.trt_version)
    return _resolve_input_dtype(options)


def load_model(checkpoint: Optional[str],
               options: ExportOptions) -> Tuple[nn.Module, Dict[str, Any]]:
    """Builds the model to export, in eval mode, and the metadata about its origin.

    Raises:
        CheckpointError, ConfigError: See :func:`cvnet.models.checkpoint.model_from_checkpoint`.
    """
    if options.random_init:
        if checkpoint is not None:
            raise ConfigError("--random-init exports an untrained model; do not also pass a "
                              "checkpoint")
        if options.arch not in list_models():
            raise ConfigError(f"unknown arch {options.arch!r}; known models: "
                              f"{', '.join(list_models())}")
        kwargs = dict(options.model_kwargs)
        torch.manual_seed(options.seed)  # the same --seed gives the same untrained weights
        try:
            model = build_model(options.arch, **kwargs).eval()
        except TypeError as err:
            raise ConfigError(f"model options {kwargs} do not fit {options.arch!r}: "
                              f"{err}") from None
        return model, {"variant": options.arch, "model_kwargs": kwargs, "untrained": True}
    if checkpoint is None:
        raise ConfigError("no checkpoint given; pass the .pt file to export, or --random-init "
                          "--arch NAME for an untrained model")
    model, loaded = model_from_checkpoint(checkpoint, arch=options.arch,
                                          model_kwargs=options.model_kwargs)
    return model, {"variant": loaded.arch, "model_kwargs": loaded.model_kwargs, "untrained": False,
                   "trained_size": trained_input_size(loaded.config),
                   "source_checkpoint": os.path.basename(loaded.path),
                   "checkpoint_sha256": loaded.sha256, "checkpoint_epoch": loaded.epoch,
                   "checkpoint_metrics": _json_safe(loaded.metrics) or None}


def _json_safe(value: Any) -> Any:
    """Checkpoint metrics as JSON types (tensors become numbers or lists)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist")
                                 else str(v)))


def _embedding_dim(model: nn.Module, input_size: Tuple[int, int]) -> int:
    """Runs one forward at the export size; returns the embedding length."""
    height, width = input_size
    divisor = getattr(model, "input_divisor", 1)
    if height % divisor or width % divisor:
        raise ConfigError(f"--input-size {height}x{width} does not fit {type(model).__name__}: "
                          "height "
                          f"and width must be multiples of {divisor}")
    with torch.no_grad():
        out = model(torch.zeros(1, 3, height, width))
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ConfigError(f"the model's eval forward returned {type(out).__name__}, not an "
                          "(N, D) embedding tensor")
    return int(out.shape[1])


def build_metadata(model: nn.Module, origin: Dict[str, Any], options: ExportOptions,
                   graph: onnx.ModelProto, *, input_dtype: str, embedding_dim: int,
                   report: Optional[VerificationReport], onnx_path: str) -> ArtifactMetadata:
    """The sidecar record of an export (``onnx_sha256`` is filled in once the bytes exist)."""
    in_graph = options.preprocess_in_graph
    height, width = options.input_size
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    batch_min, batch_max = ((options.batch, options.batch) if options.batch
                            else tuple(options.dynamic_batch))
    return ArtifactMetadata(
        format=FORMAT, format_version=FORMAT_VERSION, artifact_type="onnx",
        file=os.path.basename(onnx_path), model=type(model).__name__,
        variant=origin["variant"], model_kwargs=origin["model_kwargs"],
        param_count=param_count(model), input_name=INPUT_NAME,
        input_layout="NHWC" if in_graph else "NCHW", input_dtype=input_dtype,
        input_height=height, input_width=width, channel_order="RGB",
        mean=IN_GRAPH if in_graph else mean, std=IN_GRAPH if in_graph else std,
        output_name=OUTPUT_NAME, embedding_dim=embedding_dim, output_l2_normalized=False,
        opset=graph_opset(graph), ir_version=int(graph.ir_version),
        dynamic_batch=options.batch is None, batch_min=batch_min, batch_max=batch_max,
        graph_precision="fp16" if options.half else "fp32",
        target_tensorrt=options.trt_version,
        weights_sha256=state_dict_sha256(model.state_dict()), exporter=EXPORTER,
        torch_version=torch.__version__, onnx_version=onnx.__version__,
        cvnet_version=cvnet.__version__, untrained=origin["untrained"],
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source_checkpoint=origin.get("source_checkpoint"),
        checkpoint_sha256=origin.get("checkpoint_sha256"),
        checkpoint_epoch=origin.get("checkpoint_epoch"),
        checkpoint_metrics=origin.get("checkpoint_metrics"),
        graph_mean=mean if in_graph else None, graph_std=std if in_graph else None,
        verification=report.to_dict() if report else None)


def check_openvino(onnx_bytes: bytes, model: nn.Module, images: list,
                   check: Dict[str, Any]) -> list:
    """OpenVINO at each precision it computes here (fp32, bf16 where the CPU has it, and what
    ``auto`` computes), against PyTorch FP32: one record each.

    Raises:
        VerificationError: OpenVINO FP32 disagrees (a broken graph or runtime; nothing written).
        MissingDependencyError: openvino is not installed.
    """
    records = []
    for hint in openvino_precisions(onnx_bytes):
        record = verify_openvino(onnx_bytes, model, images, precision=hint, **check)
        precision = record["precision"]  # what it computed (auto: f16 on ARM builds)
        if not record["passed"] and precision == "fp32":
            raise VerificationError(f"OpenVINO FP32 does not reproduce PyTorch's embeddings "
                                    f"({record_summary(record)}); nothing was written")
        if not record["passed"]:
            logger.warning("OpenVINO %s fails the agreement check (%s): the OpenVINO runner "
                           "will refuse %s for this model and run fp32", precision,
                           record_summary(record), precision)
        records.append(record)
    return records


def export_model(checkpoint: Optional[str], options: ExportOptions) -> ExportResult:
    """Exports a checkpoint (or a random-init model) to a verified ONNX file and its sidecar.

    Args:
        checkpoint: A cvnet checkpoint or plain state_dict, or None with ``random_init``.
        options: What to export and how.

    Returns:
        What was written and measured.

    Raises:
        ConfigError, CheckpointError, OutputPathError: Bad request or input; nothing written.
        ExportError, UnsupportedOperatorError: The graph cannot be exported for the target.
        VerificationError: ONNX Runtime disagrees with PyTorch; nothing written.
    """
    started = time.perf_counter()
    configure_torch(torch)
    input_dtype = check_options(options)
    onnx_path = check_writable(options.output)
    json_path = check_writable(sidecar_path(onnx_path))

    model, origin = load_model(checkpoint, options)
    options = dataclasses.replace(options, input_size=resolve_input_size(
        options.input_size, origin.get("trained_size"), checkpoint))
    embedding_dim = _embedding_dim(model, options.input_size)
    height, width = options.input_size
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    module = half_for_export(model) if options.half else model
    if options.preprocess_in_graph:
        module = InGraphPreprocess(module, mean=mean, std=std).eval()
        input_shape = (options.batch or 2, height, width, 3)
    else:
        input_shape = (options.batch or 2, 3, height, width)
    graph = onnx_from_module(module, input_shape=input_shape,
                             input_dtype=getattr(torch, input_dtype), opset=options.opset,
                             dynamic_batch=options.batch is None,
                             trt_version=options.trt_version)
    rewrites = None
    if options.optimize_for == "onnxruntime":
        graph, rewrites = optimize_for_onnxruntime(graph)
        check_tensorrt_support(graph, check_export_opset(options.opset, options.trt_version))
    export_seconds = time.perf_counter() - started

    report = None
    if options.verify:
        images = verification_images(options.verify_images, options.seed)
        check = dict(config=PreprocessConfig(height, width, mean, std),
                     batches=verification_batches(static_batch=options.batch,
                                                  batch_range=options.dynamic_batch),
                     preprocess_in_graph=options.preprocess_in_graph, input_dtype=input_dtype,
                     references={})  # PyTorch's embeddings, computed once for every check
        report = verify_onnx(graph.SerializeToString(), model, images,
                             precision="fp16" if options.half else "fp32", **check)
        if not report.passed:
            raise VerificationError(f"the exported graph does not reproduce PyTorch's embeddings "
                                    f"(cosine must be >= {report.min_cosine}): {report.summary()}; "
                                    f"nothing was written")
        if "openvino" in options.verify_backends:
            report.runtime_checks = check_openvino(graph.SerializeToString(), model, images,
                                                   check)
    else:
        logger.info("not verified: the graph was not compared with PyTorch")

    started = time.perf_counter()
    metadata = build_metadata(model, origin, options, graph, input_dtype=input_dtype,
                              embedding_dim=embedding_dim, report=report, onnx_path=onnx_path)
    if rewrites is not None:  # a key older readers keep as it is (ArtifactMetadata.extra)
        metadata = metadata._replace(extra={"optimized_for": {"runtime": options.optimize_for,
                                                              "rewrites": rewrites}})
    set_metadata_props(graph, to_metadata_props(metadata))
    data = graph.SerializeToString()
    metadata = metadata._replace(onnx_sha256=sha256_bytes(data))
    text = sidecar_text(metadata, source=json_path)
    write_files_atomic({onnx_path: data, json_path: text.encode("utf-8")})
    export_seconds += time.perf_counter() - started
    logger.info("wrote %s (%.1f MB) and %s in %.1f s (verification %.1f s)", onnx_path,
                len(data) / 1e6, os.path.basename(json_path), export_seconds,
                report.seconds if report else 0.0)
    return ExportResult(onnx_path=onnx_path, sidecar_path=json_path, metadata=metadata,
                        verification=report, export_seconds=round(export_seconds, 2))
