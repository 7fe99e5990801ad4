"""What an engine build decides, as pure functions of its options, the sidecar and TensorRT.

The builder (:mod:`cvnet.engines.builder`) asks these before and while it builds; none of them
needs TensorRT or a GPU, so each is tested on its own: the batch profile (:func:`parse_batch`,
:func:`default_batch`, :func:`profile_shapes`), the precision and the FP16 flag
(:func:`decide_precision`), the attention layers pinned to FP32 (:func:`attention_layers`), and
whether this TensorRT's ONNX parser reads the graph's opset (:func:`check_parser_opset`).
Python 3.6, no torch.
"""

import logging
from collections import defaultdict
from typing import List, NamedTuple, Optional, Sequence, Tuple

from cvnet.core.artifact import ArtifactMetadata
from cvnet.core.errors import ConfigError
from cvnet.core.tensorrt_ops import operator_support
from cvnet.engines import trt_compat
from cvnet.engines.errors import EngineBuildError

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
                "giving the image size; export with a fixed size (cvnet-export "
                "--input-size)".format(
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
        want_fp16: FP16 was asked for (the default; ``--precision fp32`` turns it off).
        graph_precision: The ONNX sidecar's ``graph_precision`` (``"fp16"`` after
            ``cvnet-export --precision fp16``), or None without a sidecar.

    Returns:
        (``"fp16"`` or ``"fp32"``, set the FP16 builder flag, warning or None).
    """
    if fp16_mode == trt_compat.FP16_FROM_ONNX_TYPES:
        if graph_precision == "fp16":
            if not want_fp16:
                return "fp16", False, ("--precision fp32 has no effect here: this TensorRT has no "
                                       "FP16 "
                                       "builder flag and follows the ONNX types, which are FP16; "
                                       "export with --precision fp32 for an FP32 engine")
            return "fp16", False, None
        if not want_fp16:
            return "fp32", False, None
        reason = ("its sidecar says the graph is FP32" if graph_precision == "fp32"
                  else "without a sidecar its precision is unknown, so FP32 is recorded")
        return "fp32", False, ("this TensorRT has no FP16 builder flag (removed in 11.x): the "
                               "engine takes the ONNX's types and will be FP32 ({}); re-export "
                               "with cvnet-export --precision fp16 for an FP16 engine".format(
                                   reason))
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


def check_parser_opset(metadata: Optional[ArtifactMetadata], tensorrt_version: str,
                       onnx_path: str) -> None:
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
