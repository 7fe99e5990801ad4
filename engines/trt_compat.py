"""Every TensorRT API difference between 8.2 and 11.x, in this one module, by feature detection.

The Jetson Nano stops at TensorRT 8.2 (JetPack 4.6); JetPack 5 has 8.5/8.6, desktops and Orin
10.x, and 11.x removed more. What differs (tensorrt.md section 2):

- network creation: the explicit-batch flag is required before 10, ignored in 10, gone in 11;
- workspace: ``max_workspace_size`` (8.2; its default is 0) or ``set_memory_pool_limit`` (8.4+);
- FP16: ``BuilderFlag.FP16`` until 10.x; 11.x has none, precision comes from the ONNX types;
- per-layer precision constraints: ``STRICT_TYPES`` or ``OBEY_PRECISION_CONSTRAINTS`` until 10.x;
  11.x networks are always strongly typed;
- INT8 calibration: until 10.x (deprecated in 10.1), removed in 11;
- engine I/O: the bindings API (8.x; the only one on 8.2) or the tensor API (8.5+, the only one
  from 10), and ``execute_async_v2`` or ``execute_async_v3``.

Each function takes the imported ``tensorrt`` module and/or TensorRT objects as arguments and
decides with ``hasattr`` (never by comparing version strings), so it can be exercised with
stand-ins derived from the real API surfaces of 8.2.1, 8.6.1, 10.3.0 and 11.4.0.106
(``tests/engines/fake_tensorrt.py``; docs/tensorrt.md says what that proves: names and
signatures, never behaviour). Nothing here imports ``tensorrt``.
"""

import logging
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.tensorrt_ops import version_tuple

#: Where TensorRT's own messages go (see :func:`make_logger`).
TENSORRT_LOG = logging.getLogger("tensorrt")
#: TensorRT severities -> logging levels (its INFO is build chatter: DEBUG here).
_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR,
           "WARNING": logging.WARNING, "INFO": logging.DEBUG, "VERBOSE": logging.DEBUG}
#: TensorRT DataType member -> numpy type, for :func:`numpy_dtype`'s fallback.
_NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                "INT64": np.int64, "UINT8": np.uint8, "BOOL": np.bool_}

#: How FP16 is obtained, as :func:`fp16_mode` reports it.
FP16_BUILDER_FLAG = "builder flag"
FP16_NOT_FAST = "no fast FP16 on this GPU"
FP16_FROM_ONNX_TYPES = "from the ONNX types (no FP16 builder flag)"


def tensorrt_version(trt: Any) -> str:
    """The version string of an imported ``tensorrt`` module."""
    return str(getattr(trt, "__version__", "unknown"))


def same_tensorrt_release(a: str, b: str) -> bool:
    """Whether two TensorRT versions are the same major.minor.patch release.

    Plans are only loadable by the release that built them; the fourth (build) number is not
    compared, TensorRT's own deserialisation check has the last word.
    """
    return version_tuple(a)[:3] == version_tuple(b)[:3]


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """A TensorRT logger (an ``ILogger`` subclass, as in every release) that uses Python logging.

    TensorRT's messages go to the ``tensorrt`` logger: warnings and errors always, the rest
    (at DEBUG) with ``verbose``. Warnings and errors are also kept, in order, in the logger's
    ``complaints`` list, so a caller can tell what TensorRT said during one step (a timing
    cache it will not use, why a plan does not deserialise). The object must outlive every
    TensorRT object it is given to.
    """
    threshold = logging.DEBUG if verbose else logging.WARNING

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.complaints = []  # type: List[str]

        def log(self, severity: Any, msg: str) -> None:
            level = _LEVELS.get(str(severity).split(".")[-1], logging.WARNING)
            if level >= logging.WARNING:
                self.complaints.append(str(msg))
            if level >= threshold:
                TENSORRT_LOG.log(level, "%s", msg)

    return Logger()


# ---------------------------------------------------------------------------------------------
# Building


def create_network(builder: Any, trt: Any) -> Any:
    """An explicit-batch network definition, as each version wants it.

    Before 10 the ``EXPLICIT_BATCH`` bit is required for ONNX; 10 ignores it; 11 removed it.
    """
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if (creation is not None and hasattr(creation, "EXPLICIT_BATCH")
            and version_tuple(tensorrt_version(trt))[0] < 10):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    return builder.create_network(flags)


def set_workspace(config: Any, trt: Any, nbytes: int) -> str:
    """Limits the builder's scratch memory; returns the API used.

    8.2 only has ``max_workspace_size``, whose default is 0 (so it is always set); 8.4+ has
    ``set_memory_pool_limit`` and 10 removed the attribute.
    """
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))
        return "set_memory_pool_limit"
    config.max_workspace_size = int(nbytes)
    return "max_workspace_size"


def fp16_mode(builder: Any, trt: Any) -> str:
    """How this TensorRT and GPU give an FP16 engine: one of the ``FP16_*`` constants."""
    if not hasattr(trt.BuilderFlag, "FP16"):
        return FP16_FROM_ONNX_TYPES
    if not getattr(builder, "platform_has_fast_fp16", True):
        return FP16_NOT_FAST
    return FP16_BUILDER_FLAG


def enable_fp16(builder: Any, config: Any, trt: Any) -> bool:
    """Sets the FP16 builder flag where it exists and the GPU has fast FP16; returns whether set."""
    if fp16_mode(builder, trt) != FP16_BUILDER_FLAG:
        return False
    config.set_flag(trt.BuilderFlag.FP16)
    return True


def precision_constraint_flag(trt: Any) -> Optional[str]:
    """The builder flag that makes TensorRT obey per-layer precisions, or None (11.x).

    ``OBEY_PRECISION_CONSTRAINTS`` replaced ``STRICT_TYPES`` (removed in 10); 11.x has neither
    because its networks are always strongly typed.
    """
    for name in ("OBEY_PRECISION_CONSTRAINTS", "STRICT_TYPES"):
        if hasattr(trt.BuilderFlag, name):
            return name
    return None


class LayerSummary(NamedTuple):
    """What the builder needs to know about one network layer.

    Attributes:
        name: Layer name; the ONNX parser names a layer after its ONNX node.
        type: Layer type name, e.g. ``"MATRIX_MULTIPLY"``, ``"SOFTMAX"``, ``"REDUCE"``.
        float_outputs: Whether every output is a floating-point tensor (not a shape tensor).
    """

    name: str
    type: str
    float_outputs: bool


def network_layers(network: Any, trt: Any) -> List[LayerSummary]:
    """Every layer of a parsed network, in order."""
    floats = (trt.float32, trt.float16)
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        layers.append(LayerSummary(str(layer.name), str(layer.type).split(".")[-1],
                                   bool(outputs) and all(o.dtype in floats for o in outputs)))
    return layers


def pin_layers_fp32(network: Any, config: Any, trt: Any, names: Sequence[str]) -> List[str]:
    """Forces the named layers to compute and output FP32 inside an FP16 build.

    Returns:
        The names pinned; empty where the network is strongly typed (11.x: precision comes from
        the ONNX types, so ``cvnet-export --precision fp16`` keeps the attention in FP32 instead).
    """
    flag = precision_constraint_flag(trt)
    if flag is None or not names:
        return []
    wanted = set(names)
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in wanted:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned.append(str(layer.name))
    if pinned:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    return pinned


def network_inputs(network: Any) -> List[Tuple[str, Tuple[int, ...]]]:
    """``(name, shape)`` of every network input; dynamic dimensions are -1."""
    return [(str(network.get_input(i).name), tuple(int(d) for d in network.get_input(i).shape))
            for i in range(network.num_inputs)]


def make_profile(builder: Any, input_name: str, shapes: Sequence[Sequence[int]]) -> Any:
    """An optimisation profile with (min, opt, max) shapes for ``input_name``."""
    profile = builder.create_optimization_profile()
    low, opt, high = (tuple(int(d) for d in shape) for shape in shapes)
    profile.set_shape(input_name, low, opt, high)
    return profile


def add_profile(builder: Any, config: Any, input_name: str, shapes: Sequence[Sequence[int]]) -> Any:
    """Adds one optimisation profile with (min, opt, max) shapes for ``input_name``; returns it."""
    profile = make_profile(builder, input_name, shapes)
    config.add_optimization_profile(profile)
    return profile


def parser_errors(parser: Any) -> List[str]:
    """Every error the ONNX parser recorded, one line each: node index, name, operator, text.

    ``node_name()`` and ``node_operator()`` exist from 10.x; 8.x only has the node index.
    """
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        where = ["node {}".format(error.node())]
        for attribute in ("node_name", "node_operator"):
            if hasattr(error, attribute):
                value = getattr(error, attribute)()
                if value:
                    where.append(str(value))
        lines.append("{}: {} (code {})".format(" ".join(where), error.desc(), error.code()))
    return lines


def build_serialized(builder: Any, network: Any, config: Any) -> Optional[bytes]:
    """``build_serialized_network`` (8.0+, the only build call in every supported version)."""
    plan = builder.build_serialized_network(network, config)
    return None if plan is None else bytes(plan)


#: What :func:`attach_timing_cache` did with a serialized cache.
TIMING_CACHE_USED = "used"
TIMING_CACHE_REFUSED = "refused"
TIMING_CACHE_NONE = "none"


def attach_timing_cache(config: Any, data: bytes, trt_logger: Any) -> Tuple[str, List[str]]:
    """Gives the builder a timing cache made from ``data`` (b"" for a new one).

    TensorRT refuses a corrupt cache, or one from another release or GPU, in one of three ways:
    ``create_timing_cache`` returns None (and logs why), ``set_timing_cache`` returns False, or
    it takes the cache but logs that it will not be used (8.6: "The timing cache will not be
    used!"). Each of these, or any warning or error logged meanwhile, counts as refused: a
    fresh cache is attached instead, so the build goes on without the file's timings and the
    file can be replaced afterwards.

    Args:
        config: The builder config.
        data: The serialized cache (b"" for none yet).
        trt_logger: The logger the builder was made with (:func:`make_logger`).

    Returns:
        (:data:`TIMING_CACHE_USED`, :data:`TIMING_CACHE_REFUSED` (``data`` refused, a fresh
        cache attached) or :data:`TIMING_CACHE_NONE` (not even an empty cache could be
        attached), the warnings and errors TensorRT logged meanwhile).
    """
    start = len(trt_logger.complaints)
    cache = config.create_timing_cache(bytes(data))
    accepted = cache is not None and config.set_timing_cache(cache, False) is not False
    said = trt_logger.complaints[start:]
    if accepted and not (data and said):
        return TIMING_CACHE_USED, said
    if data:
        fresh = config.create_timing_cache(b"")
        if fresh is not None and config.set_timing_cache(fresh, False) is not False:
            return TIMING_CACHE_REFUSED, said
    return TIMING_CACHE_NONE, said


def serialized_timing_cache(config: Any) -> Optional[bytes]:
    """The builder's timing cache after a build, or None if it has none."""
    cache = config.get_timing_cache()
    return None if cache is None else bytes(cache.serialize())


def int8_support(builder: Any, trt: Any) -> Tuple[bool, str]:
    """Whether INT8 calibration is possible here, and why not.

    Calibrators exist from 8.x to 10.x (deprecated in 10.1) and are gone in 11 (explicit Q/DQ
    quantization only); the GPU must have fast INT8 (the Jetson Nano's sm_53 has none).
    """
    version = tensorrt_version(trt)
    if not (hasattr(trt.BuilderFlag, "INT8") and hasattr(trt, "IInt8EntropyCalibrator2")):
        return False, ("TensorRT {} has no INT8 calibrators (removed in 11.x, which only takes "
                       "explicitly quantized Q/DQ graphs)".format(version))
    if hasattr(builder, "platform_has_fast_int8") and not builder.platform_has_fast_int8:
        return False, ("this GPU has no fast INT8 (it needs compute capability 6.1 or 7.0+; the "
                       "Jetson Nano's 5.3 has none)")
    return True, ""


def enable_int8(config: Any, trt: Any, calibrator: Any, calibration_profile: Any = None) -> None:
    """Sets the INT8 flag and the calibrator (and the calibration profile for a dynamic batch)."""
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    if calibration_profile is not None and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(calibration_profile)


# ---------------------------------------------------------------------------------------------
# Running


class TensorDesc(NamedTuple):
    """One engine input or output.

    Attributes:
        name: Tensor name (the ONNX input/output name).
        is_input: Whether it is an input.
        shape: Shape as built; dynamic dimensions are -1.
        dtype: numpy dtype of the tensor.
        index: Binding index (bindings API) or I/O tensor index (tensor API).
    """

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: Any
    index: int


def numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    """The numpy dtype of a TensorRT ``DataType``, by ``trt.nptype``.

    TensorRT 8.2's ``nptype`` builds its table with ``np.bool`` on every call, an alias that
    numpy 1.24 to 1.26 do not have (numpy 2.0 has it again), so there it raises AttributeError
    for every type; the Jetson Nano's numpy 1.19.5 has it. Then the type is mapped here by name.

    Raises:
        TypeError: A type numpy has no equivalent of (FP8, BF16, INT4).
    """
    try:
        return np.dtype(trt.nptype(dtype))
    except AttributeError:
        name = str(dtype).split(".")[-1]
        if name not in _NUMPY_TYPES:
            raise TypeError("TensorRT type {} has no numpy equivalent".format(dtype))
        return np.dtype(_NUMPY_TYPES[name])


def uses_tensor_api(engine: Any) -> bool:
    """Whether the engine has the tensor API (8.5+); preferred where both exist (8.5/8.6)."""
    return hasattr(engine, "num_io_tensors")


def io_tensors(engine: Any, trt: Any) -> List[TensorDesc]:
    """The engine's inputs and outputs, by the tensor API where present, else by bindings."""
    tensors = []
    if uses_tensor_api(engine):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            tensors.append(TensorDesc(
                str(name), engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                tuple(int(d) for d in engine.get_tensor_shape(name)),
                numpy_dtype(trt, engine.get_tensor_dtype(name)), i))
    else:
        for i in range(engine.num_bindings):
            tensors.append(TensorDesc(
                str(engine.get_binding_name(i)), bool(engine.binding_is_input(i)),
                tuple(int(d) for d in engine.get_binding_shape(i)),
                numpy_dtype(trt, engine.get_binding_dtype(i)), i))
    return tensors


def profile_shapes(engine: Any, tensor: TensorDesc, profile: int = 0) -> Tuple[Tuple[int, ...], ...]:
    """(min, opt, max) shapes of an input in an optimisation profile.

    The tensor API takes the name first, the bindings API the profile first.
    """
    if hasattr(engine, "get_tensor_profile_shape"):
        shapes = engine.get_tensor_profile_shape(tensor.name, profile)
    else:
        shapes = engine.get_profile_shape(profile, tensor.index)
    return tuple(tuple(int(d) for d in shape) for shape in shapes)


def set_input_shape(context: Any, tensor: TensorDesc, shape: Sequence[int]) -> bool:
    """Sets the runtime shape of a dynamic input; returns TensorRT's verdict."""
    shape = tuple(int(d) for d in shape)
    if hasattr(context, "set_input_shape"):
        result = context.set_input_shape(tensor.name, shape)
    else:
        result = context.set_binding_shape(tensor.index, shape)
    return result is not False


def context_shape(context: Any, tensor: TensorDesc) -> Tuple[int, ...]:
    """The shape of a tensor for the current input shapes."""
    if hasattr(context, "get_tensor_shape"):
        shape = context.get_tensor_shape(tensor.name)
    else:
        shape = context.get_binding_shape(tensor.index)
    return tuple(int(d) for d in shape)


def execute(context: Any, tensors: Sequence[TensorDesc], addresses: Sequence[int],
            stream_handle: int) -> bool:
    """Enqueues one inference on a CUDA stream: ``execute_async_v3`` or ``execute_async_v2``.

    Args:
        context: The execution context.
        tensors: Every input and output, as :func:`io_tensors` returned them.
        addresses: Device pointer of each tensor's buffer, in the same order.
        stream_handle: The CUDA stream (``pycuda.driver.Stream().handle``).

    Returns:
        TensorRT's verdict (False: the enqueue failed).
    """
    if hasattr(context, "execute_async_v3"):
        for tensor, address in zip(tensors, addresses):
            context.set_tensor_address(tensor.name, int(address))
        return context.execute_async_v3(stream_handle) is not False
    bindings = [0] * len(tensors)
    for tensor, address in zip(tensors, addresses):
        bindings[tensor.index] = int(address)
    return context.execute_async_v2(bindings=bindings, stream_handle=stream_handle) is not False
