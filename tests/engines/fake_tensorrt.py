"""Stand-ins for the TensorRT Python API surfaces of 8.0, 8.2, 8.5, 10.x and 11.x (torch-free).

Each stand-in has only the attributes tensorrt.md section 2 lists for its version (checked there
against the pybind sources of NVIDIA/TensorRT): bindings API and ``max_workspace_size`` on 8.x,
the tensor API from 8.5, no ``EXPLICIT_BATCH``/``FP16``/calibrators on 11.x. Methods record
their calls. They let tests prove WHICH calls :mod:`engines.trt_compat` makes on each surface;
they prove nothing about TensorRT itself, and no test may claim more.
"""

import types
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from engines.trt_compat import version_tuple


class Calls(object):
    """Shared call log: a list of (name, args) tuples."""

    def __init__(self) -> None:
        self.log = []  # type: List[Tuple[str, tuple]]

    def add(self, name: str, *args: Any) -> None:
        self.log.append((name, args))

    def names(self) -> List[str]:
        return [name for name, _ in self.log]


def _enum(name: str, members: Sequence[str]) -> Any:
    return types.SimpleNamespace(**{m: "{}.{}".format(name, m) for m in members})


def fake_trt(version: str) -> Any:
    """A module-like namespace with the enums and helpers of TensorRT ``version``."""
    v = version_tuple(version)
    major = v[0]
    flags = ["INT8", "GPU_FALLBACK", "REFIT", "TF32"]
    if major < 11:
        flags.append("FP16")
    if v < (10,):
        flags.append("STRICT_TYPES")
    if (8, 2) <= v < (11,):
        flags.append("OBEY_PRECISION_CONSTRAINTS")
    creation = []
    if major < 11:
        creation.append("EXPLICIT_BATCH")
    if major >= 10:
        creation.append("STRONGLY_TYPED")
    trt = types.SimpleNamespace(
        __version__=version, float32="DataType.FLOAT", float16="DataType.HALF",
        BuilderFlag=_enum("BuilderFlag", flags),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(
            **{name: i for i, name in enumerate(creation)}),
        nptype=lambda dtype: {"DataType.FLOAT": np.float32, "DataType.HALF": np.float16}[dtype])
    if v >= (8, 4):
        trt.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE"])
    if v >= (8, 5):
        trt.TensorIOMode = _enum("TensorIOMode", ["INPUT", "OUTPUT"])
    if major < 11:
        trt.IInt8EntropyCalibrator2 = object
    return trt


class Builder(object):
    def __init__(self, calls: Calls, version: str, fast_fp16: bool = True,
                 fast_int8: bool = True):
        self.calls = calls
        if version_tuple(version)[0] < 11:  # removed in 11
            self.platform_has_fast_fp16 = fast_fp16
            self.platform_has_fast_int8 = fast_int8

    def create_network(self, flags: int) -> str:
        self.calls.add("create_network", flags)
        return "network"


class Config82(object):
    """IBuilderConfig of 8.2: ``max_workspace_size``, no memory pools."""

    def __init__(self, calls: Calls, accept_cache: bool = True):
        self.calls = calls
        self.max_workspace_size = 0
        self.flags = []  # type: List[str]
        self._accept_cache = accept_cache

    def set_flag(self, flag: str) -> None:
        self.calls.add("set_flag", flag)
        self.flags.append(flag)

    def create_timing_cache(self, data: bytes) -> Tuple[str, bytes]:
        self.calls.add("create_timing_cache", data)
        return ("cache", data)

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        self.calls.add("set_timing_cache", cache, ignore_mismatch)
        return self._accept_cache or cache[1] == b""


class Config10(Config82):
    """IBuilderConfig of 8.4+/10.x: memory pools; 10 removed ``max_workspace_size``."""

    def __init__(self, calls: Calls, accept_cache: bool = True):
        super(Config10, self).__init__(calls, accept_cache)
        del self.max_workspace_size

    def set_memory_pool_limit(self, pool: str, nbytes: int) -> None:
        self.calls.add("set_memory_pool_limit", pool, nbytes)


class Output(object):
    def __init__(self, dtype: str):
        self.dtype = dtype


class Layer(object):
    def __init__(self, name: str, type_name: str, dtypes: Sequence[str] = ("DataType.FLOAT",)):
        self.name = name
        self.type = "LayerType." + type_name
        self._outputs = [Output(d) for d in dtypes]
        self.num_outputs = len(self._outputs)
        self.precision = None
        self.output_types = {}  # type: Dict[int, str]

    def get_output(self, i: int) -> Output:
        return self._outputs[i]

    def set_output_type(self, i: int, dtype: str) -> None:
        self.output_types[i] = dtype


class Network(object):
    def __init__(self, layers: Sequence[Layer]):
        self.layers = list(layers)
        self.num_layers = len(self.layers)

    def get_layer(self, i: int) -> Layer:
        return self.layers[i]


class ParserError82(object):
    def __init__(self, desc: str, node: int, code: int):
        self._desc, self._node, self._code = desc, node, code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def code(self) -> str:
        return "ErrorCode.UNSUPPORTED_NODE" if self._code else "ErrorCode.SUCCESS"


class ParserError10(ParserError82):
    def __init__(self, desc: str, node: int, code: int, name: str, operator: str):
        super(ParserError10, self).__init__(desc, node, code)
        self._name, self._operator = name, operator

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._operator


class Parser(object):
    def __init__(self, errors: Sequence[Any]):
        self._errors = list(errors)
        self.num_errors = len(self._errors)

    def get_error(self, i: int) -> Any:
        return self._errors[i]


# Engines and contexts: input "images" (-1, 3, 64, 64) float32, output "embeddings" (-1, 96).
_IO = [("images", True, (-1, 3, 64, 64)), ("embeddings", False, (-1, 96))]
_PROFILE = ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))


class Engine82(object):
    """ICudaEngine of 8.2: bindings only."""

    def __init__(self, calls: Calls):
        self.calls = calls
        self.num_bindings = len(_IO)

    def get_binding_name(self, i: int) -> str:
        return _IO[i][0]

    def binding_is_input(self, i: int) -> bool:
        return _IO[i][1]

    def get_binding_shape(self, i: int) -> Tuple[int, ...]:
        return _IO[i][2]

    def get_binding_dtype(self, i: int) -> str:
        return "DataType.FLOAT"

    def get_profile_shape(self, profile: int, binding: Any) -> Tuple[Tuple[int, ...], ...]:
        self.calls.add("get_profile_shape", profile, binding)
        return _PROFILE


class EngineTensorApi(object):
    """ICudaEngine of 10.x/11.x: tensor API only."""

    def __init__(self, calls: Calls, trt: Any):
        self.calls = calls
        self.trt = trt
        self.num_io_tensors = len(_IO)

    def _find(self, name: str) -> Tuple[str, bool, Tuple[int, ...]]:
        return next(entry for entry in _IO if entry[0] == name)

    def get_tensor_name(self, i: int) -> str:
        return _IO[i][0]

    def get_tensor_mode(self, name: str) -> str:
        return self.trt.TensorIOMode.INPUT if self._find(name)[1] else self.trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return self._find(name)[2]

    def get_tensor_dtype(self, name: str) -> str:
        return "DataType.FLOAT"

    def get_tensor_profile_shape(self, name: str, profile: int) -> Tuple[Tuple[int, ...], ...]:
        self.calls.add("get_tensor_profile_shape", name, profile)
        return _PROFILE


class Engine85(Engine82, EngineTensorApi):
    """ICudaEngine of 8.5/8.6: both APIs."""

    def __init__(self, calls: Calls, trt: Any):
        Engine82.__init__(self, calls)
        EngineTensorApi.__init__(self, calls, trt)


class Context82(object):
    def __init__(self, calls: Calls, accept: bool = True):
        self.calls = calls
        self._accept = accept

    def set_binding_shape(self, index: int, shape: Tuple[int, ...]) -> bool:
        self.calls.add("set_binding_shape", index, shape)
        return self._accept

    def get_binding_shape(self, index: int) -> Tuple[int, ...]:
        return (2, 96)

    def execute_async_v2(self, bindings: List[int], stream_handle: int) -> bool:
        self.calls.add("execute_async_v2", list(bindings), stream_handle)
        return True


class ContextTensorApi(object):
    def __init__(self, calls: Calls, accept: bool = True):
        self.calls = calls
        self._accept = accept

    def set_input_shape(self, name: str, shape: Tuple[int, ...]) -> bool:
        self.calls.add("set_input_shape", name, shape)
        return self._accept

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return (2, 96)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.calls.add("set_tensor_address", name, address)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls.add("execute_async_v3", stream_handle)
        return True


def surface(version: str, calls: Optional[Calls] = None, **builder_options: Any) -> Any:
    """(trt, builder, config) stand-ins for one TensorRT version."""
    calls = calls or Calls()
    config = Config82(calls) if version_tuple(version) < (8, 4) else Config10(calls)
    return fake_trt(version), Builder(calls, version, **builder_options), config


# ---------------------------------------------------------------------------------------------
# A whole-build stand-in: enough of Logger/Builder/OnnxParser/network/config for
# engines.builder.engine_bytes_from_onnx to run its sequence of calls. build_serialized_network
# returns fixed bytes: nothing is built.


class Profile(object):
    def __init__(self, calls: Calls):
        self.calls = calls

    def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
        self.calls.add("profile.set_shape", name, low, opt, high)


class Input(object):
    def __init__(self, name: str, shape: Tuple[int, ...]):
        self.name, self.shape = name, shape


class BuildNetwork(Network):
    def __init__(self, layers: Sequence[Layer], input_shape: Tuple[int, ...]):
        super(BuildNetwork, self).__init__(layers)
        self.num_inputs, self.num_outputs = 1, 1
        self._input = Input("images", input_shape)

    def get_input(self, i: int) -> Input:
        return self._input


class TimingCache(object):
    def serialize(self) -> bytes:
        return b"timing cache bytes"


def build_surface(version: str, layers: Sequence[Layer], input_shape=(-1, 3, 64, 64),
                  parse_errors: Sequence[Any] = (), plan: Optional[bytes] = b"PLAN",
                  fast_fp16: bool = True) -> Tuple[Any, Calls]:
    """A tensorrt stand-in whose builder runs through a whole (pretend) build, and its call log."""
    calls = Calls()
    trt = fake_trt(version)
    config = Config82(calls) if version_tuple(version) < (8, 4) else Config10(calls)
    config.add_optimization_profile = lambda profile: calls.add("add_optimization_profile")
    config.get_timing_cache = lambda: TimingCache()
    network = BuildNetwork(layers, input_shape)

    class Logger(object):
        WARNING, VERBOSE = "WARNING", "VERBOSE"

        def __init__(self, severity: str):
            calls.add("Logger", severity)

    class FullBuilder(Builder):
        def __init__(self, logger: Any):
            super(FullBuilder, self).__init__(calls, version, fast_fp16=fast_fp16)

        def create_network(self, flags: int) -> BuildNetwork:
            calls.add("create_network", flags)
            return network

        def create_builder_config(self) -> Any:
            return config

        def create_optimization_profile(self) -> Profile:
            return Profile(calls)

        def build_serialized_network(self, net: Any, cfg: Any) -> Optional[bytes]:
            calls.add("build_serialized_network")
            return plan

    class OnnxParser(Parser):
        def __init__(self, net: Any, logger: Any):
            super(OnnxParser, self).__init__(parse_errors)

        def parse_from_file(self, path: str) -> bool:
            calls.add("parse_from_file", path)
            return not parse_errors

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, FullBuilder, OnnxParser
    trt.network, trt.config = network, config
    return trt, calls
