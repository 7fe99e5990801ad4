"""Stand-ins for TensorRT's Python API, derived from its real API surfaces (torch-free, Python 3.6).

What a stand-in HAS comes from the committed surface of the release it stands for
(``tests/engines/data/trt_api/surface-<version>.json``, see :mod:`tests.engines.trt_api`):
every class, method, property, enum and enum member of that release and nothing else, each
method taking the real argument names. So on a stand-in, as on the real module,

- an attribute the release lacks raises AttributeError, and ``hasattr`` answers as it would;
- a call with a keyword the real method lacks, too many arguments or a required one missing
  raises TypeError;
- assigning an attribute the class lacks, or a read-only property, raises AttributeError.

What a stand-in DOES is written here by hand: the ``*Behaviour`` classes, for the calls cvnet
makes, answer from a :class:`Scenario` and every call is recorded. A behaviour member that the
release lacks is left out of that release's class; one that no committed release has, or whose
arguments or kind differ from the real ones, is an error (:class:`StandInDrift`). Members
without a behaviour accept the real arguments, are recorded and return None; properties without
one store what is assigned.

Tests built on these prove which calls cvnet makes, with which names, on each release's API.
They prove nothing about what TensorRT does: nothing here builds or runs a network.
"""

import inspect
from collections import OrderedDict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from tests.engines import trt_api

#: Every release there is a stand-in for, oldest first.
VERSIONS = trt_api.VERSIONS
#: Dunder members a behaviour may add without a surface entry: Python stand-ins for C-level
#: protocols (pybind11's buffer protocol on IHostMemory is ``bytes(memory)`` here).
PROTOCOL_STAND_INS = frozenset(("__bytes__",))


class StandInDrift(AssertionError):
    """A hand-written behaviour contradicts the real surface of a release."""


class Calls(object):
    """The call log of one stand-in module: ``(Class.member, arguments by real name)``."""

    def __init__(self) -> None:
        self.log = []  # type: List[Tuple[str, Dict[str, Any]]]

    def add(self, name: str, arguments: Dict[str, Any]) -> None:
        self.log.append((name, arguments))

    def names(self) -> List[str]:
        return [name for name, _ in self.log]

    def of(self, name: str) -> List[Dict[str, Any]]:
        """The arguments of every call of ``name`` (e.g. ``"IBuilderConfig.set_flag"``)."""
        return [arguments for called, arguments in self.log if called == name]


# ---------------------------------------------------------------------------------------------
# What the pretend TensorRT does


class LayerSpec(NamedTuple):
    """One network layer: its name, ``LayerType`` member and output ``DataType`` members."""

    name: str
    type: str
    outputs: Tuple[str, ...] = ("FLOAT",)


class TensorSpec(NamedTuple):
    """One engine input or output: name, direction, shape as built (-1 dynamic), DataType."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: str = "FLOAT"


class ParseErrorSpec(NamedTuple):
    """One ONNX parser error (``node_name``/``node_operator`` are asked only from 10.x)."""

    desc: str
    node: int
    name: str = ""
    operator: str = ""


#: The engine every scenario deserialises unless told otherwise: images -> 96-d embeddings.
DEFAULT_IO = (TensorSpec("images", True, (-1, 3, 64, 64)),
              TensorSpec("embeddings", False, (-1, 96)))
DEFAULT_PROFILE = ((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))
#: What TensorRT 8.6 logs for a corrupt timing cache (NVIDIA/TensorRT#3566).
CORRUPT_CACHE_LOG = ("1: [stdArchiveReader.cpp::StdArchiveReaderInitCommon::36] Error Code 1: "
                     "Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed."
                     "Magic tag does not match)", "4: The timing cache will not be used!")


class Scenario(NamedTuple):
    """What the pretend TensorRT answers.

    Attributes:
        layers: The parsed network's layers.
        network_input: Shape of the parsed network's one input ("images").
        parse_errors: Errors ``parse_from_file`` reports (it fails if there are any).
        plan: What ``build_serialized_network`` returns; None for a failed build.
        fast_fp16: ``platform_has_fast_fp16`` (where the release has it).
        fast_int8: ``platform_has_fast_int8``.
        timing_cache: How a non-empty serialized timing cache is taken: ``"accept"``;
            ``"foreign"`` (``set_timing_cache`` returns False: another GPU or release);
            ``"corrupt"`` (``create_timing_cache`` logs two errors and returns None);
            ``"complains"`` (it is accepted, but TensorRT logs that it will not be used).
        io: The deserialised engine's inputs and outputs.
        profile: (min, opt, max) shape of the input in profile 0.
        accept_shapes: Whether the context accepts an input shape.
        output_rows: Rows of the output for any input batch (a graph that is not
            batch-major); None for the input's batch.
        enqueue_ok: What ``execute_async_v2/v3`` return.
        deserialize_ok: Whether ``deserialize_cuda_engine`` returns an engine (else None).
        gpu: A :class:`tests.engines.fake_gpu.FakeGpu` whose memory and streams the pretend
            engine reads and writes, or None (then execution is only recorded).
    """

    layers: Tuple[LayerSpec, ...] = ()
    network_input: Tuple[int, ...] = (-1, 3, 64, 64)
    parse_errors: Tuple[ParseErrorSpec, ...] = ()
    plan: Optional[bytes] = b"PLAN"
    fast_fp16: bool = True
    fast_int8: bool = True
    timing_cache: str = "accept"
    io: Tuple[TensorSpec, ...] = DEFAULT_IO
    profile: Tuple[Tuple[int, ...], ...] = DEFAULT_PROFILE
    accept_shapes: bool = True
    output_rows: Optional[int] = None
    enqueue_ok: bool = True
    deserialize_ok: bool = True
    gpu: Any = None


# ---------------------------------------------------------------------------------------------
# Enums


class EnumValue(object):
    """One member of a TensorRT enum: ``str()`` is ``"Enum.NAME"``, ``int()`` its value."""

    __slots__ = ("enum", "name", "value")

    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return int(self.value)

    __index__ = __int__

    def __str__(self) -> str:
        return "{}.{}".format(self.enum, self.name)

    def __repr__(self) -> str:
        return "<{}.{}: {}>".format(self.enum, self.name, self.value)

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, EnumValue) and other.enum == self.enum
                and other.name == self.name)

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.enum, self.name))


class EnumType(object):
    """A TensorRT enum: its members as attributes, and ``__members__``."""

    def __init__(self, name: str, members: Dict[str, Any]):
        self.__name__ = name
        self.__members__ = OrderedDict(
            (member, EnumValue(name, member, value))
            for member, value in sorted(members.items(), key=lambda item: (item[1], item[0])))
        for member, value in self.__members__.items():
            setattr(self, member, value)

    def __repr__(self) -> str:
        return "<enum {}>".format(self.__name__)


# ---------------------------------------------------------------------------------------------
# Surface-derived classes


class Fake(object):
    """Base of every stand-in class; a conformed class sets ``_real``, ``_members``, ``_trt``."""

    _real = "?"
    _members = {}  # type: Dict[str, Dict[str, Any]]
    _trt = None  # type: Any
    _conformed = None  # type: Any
    _defaults = {}  # type: Dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> "Fake":
        obj = object.__new__(cls)
        object.__setattr__(obj, "_values", {})
        return obj

    def _setup(self, **state: Any) -> None:
        """Sets up an instance the pretend TensorRT hands out (not made by a Python call)."""
        for name, value in state.items():
            object.__setattr__(self, "_" + name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or type(self) is not type(self)._conformed:
            object.__setattr__(self, name, value)  # bookkeeping, or cvnet's own subclass
            return
        info = self._members.get(name)
        if info is None or info["kind"] != "property":
            raise AttributeError("TensorRT {}'s {} has no attribute {!r} to assign".format(
                self._trt.__version__, self._real, name))
        if info.get("readonly"):
            raise AttributeError("TensorRT {}'s {}.{} is read-only".format(
                self._trt.__version__, self._real, name))
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError("TensorRT {}'s {} has no attribute {!r} (stand-in read from {})"
                             .format(self._trt.__version__ if self._trt else "?", self._real,
                                     name, "surface-{}.json".format(self._trt._surface_version)
                                     if self._trt else "?"))


def _stored_property(name: str, readonly: bool) -> property:
    def get(self: Fake) -> Any:
        return self._values.get(name, type(self)._defaults.get(name))

    def put(self: Fake, value: Any) -> None:
        self._values[name] = value
        self._trt._log.add("{}.{}=".format(self._real, name), {"value": value})

    return property(get, None if readonly else put)


def _behaviour_member(behaviour: type, name: str) -> Any:
    for klass in behaviour.__mro__:
        if klass is object:
            return None
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _public_members(behaviour: type) -> List[str]:
    """The members a behaviour defines that must exist in a real surface."""
    names = set()
    for klass in behaviour.__mro__:
        if klass is object:
            continue
        for name in klass.__dict__:
            if (not name.startswith("_") or name == "__init__") and name != "_defaults":
                names.add(name)
    return sorted(names)


def _check_behaviour(trt: "FakeTensorRT", real: str, name: str, info: Dict[str, Any],
                     own: Any) -> None:
    """Raises StandInDrift when a behaviour's kind or arguments contradict the real member."""
    where = "fake_tensorrt's {}.{} vs TensorRT {}'s".format(real, name, trt.__version__)
    if info["kind"] == "property":
        if not isinstance(own, property):
            raise StandInDrift("{} property: the stand-in has a {}".format(
                where, type(own).__name__))
        if (own.fset is None) != bool(info.get("readonly")):
            raise StandInDrift("{} property is {}, the stand-in's is {}".format(
                where, "read-only" if info.get("readonly") else "writable",
                "read-only" if own.fset is None else "writable"))
        return
    if info["kind"] not in ("method", "staticmethod") or not callable(own):
        raise StandInDrift("{} {}: the stand-in has a {}".format(where, info["kind"],
                                                                  type(own).__name__))
    parameters = list(inspect.signature(own).parameters.values())[1:]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in parameters)
    names = {p.name for p in parameters if p.kind != p.VAR_KEYWORD}
    required = {p.name for p in parameters
                if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    for signature in info.get("signatures", []):
        params = trt_api.signature_params(signature)
        if params is None:
            continue
        real_names = {p.name for p in params}
        if (not accepts_any and not real_names <= names) or not required <= real_names:
            raise StandInDrift("{} method takes {} ({}); the stand-in takes ({})".format(
                where, signature, ", ".join(sorted(real_names)),
                ", ".join(p.name for p in parameters)))


def _bind(trt: "FakeTensorRT", real: str, name: str, signatures: Sequence[str],
          args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Binds a call to the real signatures: the arguments by name, or None if they are unknown.

    Raises:
        TypeError: No real signature takes these arguments (as pybind11 would raise).
    """
    parsed = [trt_api.signature_params(s) for s in signatures]
    known = [params for params in parsed if params is not None]
    if not known:
        return None
    for params in known:
        if len(args) > len(params):
            continue
        bound = OrderedDict((p.name, value) for p, value in zip(params, args))
        names = [p.name for p in params]
        if any(key not in names or key in bound for key in kwargs):
            continue
        bound.update(kwargs)
        if all(p.name in bound or p.has_default for p in params):
            return dict(bound)
    if len(known) < len(parsed):
        return None  # an overload with unknown arguments (source-derived 8.2) may take them
    raise TypeError("TensorRT {}: {}.{}() got arguments {} and keywords {}; the real "
                    "signatures are: {}".format(trt.__version__, real, name, args,
                                                sorted(kwargs), " | ".join(signatures)))


def _method(trt: "FakeTensorRT", real: str, name: str, info: Dict[str, Any],
            own: Optional[Callable[..., Any]]) -> Callable[..., Any]:
    signatures = list(info.get("signatures", []))
    static = info["kind"] == "staticmethod"

    def method(*args: Any, **kwargs: Any) -> Any:
        this, rest = (None, args) if static else (args[0], args[1:])
        bound = _bind(trt, real, name, signatures, rest, kwargs)
        trt._log.add("{}.{}".format(real, name), bound if bound is not None else
                     {"*args": rest, "**kwargs": kwargs})
        if own is None:
            return None
        call_args = () if bound is not None else rest
        call_kwargs = bound if bound is not None else kwargs
        return own(*call_args, **call_kwargs) if static else own(this, *call_args,
                                                                    **call_kwargs)

    method.__name__ = name
    return staticmethod(method) if static else method


def _no_constructor(trt: "FakeTensorRT", real: str) -> Callable[..., None]:
    def __init__(self: Fake, *args: Any, **kwargs: Any) -> None:
        raise TypeError("TensorRT {}: {}: No constructor defined!".format(trt.__version__, real))
    return __init__


def conform(trt: "FakeTensorRT", real: str) -> type:
    """The stand-in class for the real class ``real`` of ``trt``'s release."""
    info = trt._surface["classes"][real]
    behaviour = BEHAVIOURS.get(real, object)
    namespace = {"_real": real, "_members": info["members"], "_trt": trt,
                 "_defaults": dict(getattr(behaviour, "_defaults", {}))}  # type: Dict[str, Any]
    nested = {}
    for name, member in sorted(info["members"].items()):
        own = _behaviour_member(behaviour, name)
        kind = member["kind"]
        if own is not None:
            _check_behaviour(trt, real, name, member, own)
        if kind in ("method", "staticmethod"):
            if name == "__init__" and not member.get("signatures"):
                namespace[name] = _no_constructor(trt, real)
            else:
                namespace[name] = _method(trt, real, name, member, own)
        elif kind == "property":
            namespace[name] = own if own is not None else _stored_property(
                name, bool(member.get("readonly")))
        elif kind == "enum":
            nested[name] = namespace[name] = EnumType(name, member["members"])
        elif kind == "class":
            namespace[name] = type(name, (object,), {})
    for name, member in info["members"].items():
        if member["kind"] == "attribute":
            enum, _, value = member.get("value", "").partition(".")
            namespace[name] = (getattr(nested[enum], value) if enum in nested
                               else trt._constant(member.get("value", "")))
    for name in PROTOCOL_STAND_INS:
        own = _behaviour_member(behaviour, name)
        if own is not None:
            namespace[name] = own
    for name in ("_setup",) + tuple(n for n in dir(behaviour) if n.startswith("_")
                                    and not n.startswith("__") and n != "_defaults"):
        own = _behaviour_member(behaviour, name)
        if own is not None:
            namespace[name] = own
    cls = type(real, (Fake,), namespace)
    cls._conformed = cls
    return cls


class FakeTensorRT(object):
    """A stand-in ``tensorrt`` module for one committed release.

    Args:
        version: One of :data:`VERSIONS`.
        **scenario: :class:`Scenario` fields.
    """

    def __init__(self, version: str, **scenario: Any):
        self._surface = trt_api.load_surface(version)
        self._surface_version = version
        self.__version__ = str(self._surface["version"])
        self._scenario = Scenario(**scenario)
        self._log = Calls()
        self._classes = {}  # type: Dict[str, type]

    def __repr__(self) -> str:
        return "<stand-in tensorrt {}>".format(self.__version__)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_"):
            raise AttributeError(name)
        surface = self._surface
        if name in surface["enums"]:
            value = EnumType(name, surface["enums"][name])  # type: Any
        elif name in surface["classes"]:
            value = self._class(name)
        elif name in surface["functions"]:
            info = {"kind": "staticmethod", "signatures": surface["functions"][name]["signatures"]}
            own = FUNCTIONS_OF.get(self._surface_version, FUNCTIONS).get(name)
            value = _method(self, "tensorrt", name, info, own).__func__
        elif name in surface["constants"]:
            value = self._constant(surface["constants"][name])
        else:
            raise AttributeError("module 'tensorrt' (stand-in for TensorRT {}) has no attribute "
                                 "{!r}".format(self.__version__, name))
        object.__setattr__(self, name, value)
        return value

    def _class(self, name: str) -> type:
        if name not in self._classes:
            self._classes[name] = conform(self, name)
        return self._classes[name]

    def _constant(self, text: str) -> Any:
        enum, _, member = text.partition(".")
        if member and enum in self._surface["enums"]:
            return getattr(getattr(self, enum), member)
        return text

    def _make(self, real: str, **state: Any) -> Fake:
        """An instance of the stand-in of ``real`` as TensorRT would hand it out."""
        cls = self._class(real)
        obj = cls.__new__(cls)
        obj._setup(**state)
        return obj

    def _emit(self, logger_obj: Any, severity: str, message: str) -> None:
        """Logs through the ILogger cvnet gave TensorRT, as TensorRT would."""
        if logger_obj is not None:
            logger_obj.log(getattr(self.ILogger.Severity, severity), message)

    def _current_device(self) -> Optional[int]:
        gpu = self._scenario.gpu
        return None if gpu is None else gpu.current_device()


def tensorrt(version: str, **scenario: Any) -> FakeTensorRT:
    """A stand-in ``tensorrt`` module of ``version`` answering from ``Scenario(**scenario)``."""
    return FakeTensorRT(version, **scenario)


def flags(config: Any) -> List[str]:
    """The builder flags set on a stand-in config, as names (``["FP16"]``)."""
    return [flag.name for flag in config._flags]


# ---------------------------------------------------------------------------------------------
# Behaviours: what the pretend TensorRT does for the calls cvnet makes


def _nptype(trt_type: Any) -> Any:
    """``tensorrt.nptype`` as each release writes it (8.2: ``np.bool``, gone in numpy 1.24-1.26)."""
    name = getattr(trt_type, "name", None)
    mapping = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
               "UINT8": np.uint8, "INT64": np.int64}
    if name == "BOOL":
        return np.bool_
    if name in mapping:
        return mapping[name]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


def _nptype_8_2(trt_type: Any) -> Any:
    mapping = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
               "BOOL": getattr(np, "bool")}  # 8.2's __init__.py builds this dict on every call
    name = getattr(trt_type, "name", None)
    if name in mapping:
        return mapping[name]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


#: Module functions with a behaviour, by release (the rest are recorders).
FUNCTIONS = {"nptype": _nptype}
FUNCTIONS_OF = {"8.2.1": {"nptype": _nptype_8_2}}


class HostMemoryBehaviour(object):
    """IHostMemory: the bytes of a plan or a serialized cache."""

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        return bytes(self._data)


class TimingCacheBehaviour(object):
    def serialize(self) -> Any:
        return self._trt._make("IHostMemory", data=b"timing cache bytes")


class TensorBehaviour(object):
    def _setup(self, name: str, shape: Tuple[int, ...], dtype_name: str) -> None:
        Fake._setup(self, name=name, shape=shape)
        self._values["dtype"] = getattr(self._trt.DataType, dtype_name)

    @property
    def name(self) -> str:
        return self._values.get("name", self._name)

    @name.setter
    def name(self, value: str) -> None:
        self._values["name"] = value

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self._values.get("shape", self._shape))

    @shape.setter
    def shape(self, value: Sequence[int]) -> None:
        self._values["shape"] = tuple(value)


class LayerBehaviour(object):
    """ILayer of a parsed network (every layer type's common part)."""

    @property
    def name(self) -> str:
        return self._values.get("name", self._spec.name)

    @name.setter
    def name(self, value: str) -> None:
        self._values["name"] = value

    @property
    def type(self) -> Any:
        return getattr(self._trt.LayerType, self._spec.type)

    @property
    def num_outputs(self) -> int:
        return len(self._spec.outputs)

    def get_output(self, index: int) -> Any:
        return self._trt._make("ITensor", name="{}_output_{}".format(self._spec.name, index),
                               shape=(), dtype_name=self._spec.outputs[index])


class NetworkBehaviour(object):
    @property
    def num_layers(self) -> int:
        return len(self._trt._scenario.layers)

    def get_layer(self, index: int) -> Any:
        if index not in self._layers:
            self._layers[index] = self._trt._make("ILayer", spec=self._trt._scenario.layers[index])
        return self._layers[index]

    @property
    def num_inputs(self) -> int:
        return 1

    def get_input(self, index: int) -> Any:
        return self._input

    @property
    def num_outputs(self) -> int:
        return 1

    def _setup(self, **state: Any) -> None:
        Fake._setup(self, **state)
        self._layers = {}  # type: Dict[int, Any]
        self._input = self._trt._make("ITensor", name="images",
                                      shape=self._trt._scenario.network_input,
                                      dtype_name="FLOAT")


class ParserErrorBehaviour(object):
    def desc(self) -> str:
        return self._spec.desc

    def node(self) -> int:
        return self._spec.node

    def code(self) -> Any:
        return self._trt.ErrorCode.UNSUPPORTED_NODE

    def node_name(self) -> str:
        return self._spec.name

    def node_operator(self) -> str:
        return self._spec.operator


class OnnxParserBehaviour(object):
    def __init__(self, network: Any, logger: Any) -> None:
        self._network, self._logger = network, logger

    def parse_from_file(self, model: str) -> bool:
        return not self._trt._scenario.parse_errors

    @property
    def num_errors(self) -> int:
        return len(self._trt._scenario.parse_errors)

    def get_error(self, index: int) -> Any:
        return self._trt._make("ParserError", spec=self._trt._scenario.parse_errors[index])


class ConfigBehaviour(object):
    """IBuilderConfig: flags, workspace, profiles, timing cache, INT8 calibration."""

    _defaults = {"max_workspace_size": 0}

    def _setup(self, **state: Any) -> None:
        Fake._setup(self, **state)
        self._flags = []  # type: List[Any]
        self._profiles = []  # type: List[Any]
        self._cache = None  # type: Any

    def set_flag(self, flag: Any) -> None:
        self._flags.append(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self._flags

    def add_optimization_profile(self, profile: Any) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def set_calibration_profile(self, profile: Any) -> bool:
        self._values["calibration_profile"] = profile
        return True

    def create_timing_cache(self, serialized_timing_cache: Any) -> Any:
        data = bytes(serialized_timing_cache)
        if data and self._trt._scenario.timing_cache == "corrupt":
            for message in CORRUPT_CACHE_LOG:
                self._trt._emit(self._builder._logger, "ERROR", message)
            return None
        return self._trt._make("ITimingCache", data=data)

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        how = self._trt._scenario.timing_cache if cache._data else "accept"
        if how == "complains":
            self._trt._emit(self._builder._logger, "ERROR", CORRUPT_CACHE_LOG[1])
        if how == "foreign" and not ignore_mismatch:
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> Any:
        return self._cache


class BuilderBehaviour(object):
    """Builder: creates networks and configs; "builds" by returning the scenario's plan."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._device = self._trt._current_device()
        self._built_on = []  # type: List[Optional[int]]

    @property
    def platform_has_fast_fp16(self) -> bool:
        return self._trt._scenario.fast_fp16

    @property
    def platform_has_fast_int8(self) -> bool:
        return self._trt._scenario.fast_int8

    def create_network(self, flags: int = 0) -> Any:
        return self._trt._make("INetworkDefinition", flags=flags)

    def create_builder_config(self) -> Any:
        return self._trt._make("IBuilderConfig", builder=self)

    def create_optimization_profile(self) -> Any:
        return self._trt._make("IOptimizationProfile")

    def build_serialized_network(self, network: Any, config: Any, kernel_text: Any = None) -> Any:
        self._built_on.append(self._trt._current_device())
        int8 = getattr(self._trt.BuilderFlag, "INT8", None)
        if int8 is not None and int8 in config._flags and config._values.get("int8_calibrator"):
            _calibrate(self._trt, config._values["int8_calibrator"], network)
        plan = self._trt._scenario.plan
        return None if plan is None else self._trt._make("IHostMemory", data=plan)


def _calibrate(trt: FakeTensorRT, calibrator: Any, network: Any) -> None:
    """What TensorRT does with a calibrator: cache, else batches until None, then write."""
    cache = calibrator.read_calibration_cache()
    batches = []  # type: List[np.ndarray]
    if not cache:
        size = int(calibrator.get_batch_size())
        shape = (size,) + tuple(network.get_input(0).shape[1:])
        while True:
            pointers = calibrator.get_batch([network.get_input(0).name])
            if not pointers:
                break
            gpu = trt._scenario.gpu
            if gpu is not None:
                batches.append(gpu.read(int(pointers[0]), shape, np.float32))
        calibrator.write_calibration_cache(b"TRT-fake-EntropyCalibration2 table")
    trt._log.add("calibrated", {"from_cache": bool(cache), "batches": batches})


class ProfileBehaviour(object):
    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        self._shapes = (tuple(min), tuple(opt), tuple(max))


class RuntimeBehaviour(object):
    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any = None, stream_reader: Any = None,
                                stream_reader_v2: Any = None) -> Any:
        if not self._trt._scenario.deserialize_ok:
            self._trt._emit(self._logger, "ERROR", "1: [stdArchiveReader.cpp::StdArchiveReader"
                            "::32] Error Code 1: Serialization (Serialization assertion "
                            "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            return None
        return self._trt._make("ICudaEngine", device=self._trt._current_device())


class EngineBehaviour(object):
    """ICudaEngine: the scenario's I/O through the bindings API and/or the tensor API."""

    def _spec(self, key: Any) -> TensorSpec:
        io = self._trt._scenario.io
        return io[key] if isinstance(key, int) else next(t for t in io if t.name == key)

    # bindings API (8.x)
    @property
    def num_bindings(self) -> int:
        return len(self._trt._scenario.io)

    def get_binding_name(self, index: int) -> str:
        return self._spec(index).name

    def binding_is_input(self, index: Any = None, name: Any = None) -> bool:
        return self._spec(name if index is None else index).is_input

    def get_binding_shape(self, index: Any = None, name: Any = None) -> Tuple[int, ...]:
        return self._spec(name if index is None else index).shape

    def get_binding_dtype(self, index: Any = None, name: Any = None) -> Any:
        return getattr(self._trt.DataType, self._spec(name if index is None else index).dtype)

    def get_profile_shape(self, profile_index: int, binding: Any) -> Tuple[Tuple[int, ...], ...]:
        return self._trt._scenario.profile

    # tensor API (8.5+)
    @property
    def num_io_tensors(self) -> int:
        return len(self._trt._scenario.io)

    def get_tensor_name(self, index: int) -> str:
        return self._spec(index).name

    def get_tensor_mode(self, name: str) -> Any:
        mode = self._trt.TensorIOMode
        return mode.INPUT if self._spec(name).is_input else mode.OUTPUT

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return self._spec(name).shape

    def get_tensor_dtype(self, name: str) -> Any:
        return getattr(self._trt.DataType, self._spec(name).dtype)

    def get_tensor_profile_shape(self, name: str,
                                 profile_index: int) -> Tuple[Tuple[int, ...], ...]:
        return self._trt._scenario.profile

    def create_execution_context(self, strategy: Any = None, runtime_config: Any = None) -> Any:
        return self._trt._make("IExecutionContext", engine=self)


class ContextBehaviour(object):
    """IExecutionContext: input shapes, output shapes after them, and execution on the fake GPU.

    Execution writes into each output row the first values of the same input row (so a test can
    tell which input row produced which output row), cast to the output's type.
    """

    def _setup(self, **state: Any) -> None:
        Fake._setup(self, **state)
        self._batch = None  # type: Optional[int]
        self._addresses = {}  # type: Dict[str, int]

    def _input(self) -> TensorSpec:
        return next(t for t in self._trt._scenario.io if t.is_input)

    def _shape_of(self, spec: TensorSpec) -> Tuple[int, ...]:
        if spec.shape[0] >= 0:
            return spec.shape
        if spec.is_input:
            batch = self._batch if self._batch is not None else -1
        else:
            rows = self._trt._scenario.output_rows
            batch = rows if rows is not None else (self._batch if self._batch is not None
                                                   else -1)
        return (batch,) + tuple(spec.shape[1:])

    def _set_batch(self, shape: Sequence[int]) -> bool:
        low, _, high = self._trt._scenario.profile
        if not self._trt._scenario.accept_shapes or not low[0] <= shape[0] <= high[0]:
            return False
        self._batch = int(shape[0])
        return True

    def set_binding_shape(self, binding: int, shape: Sequence[int]) -> bool:
        return self._set_batch(shape)

    def get_binding_shape(self, binding: int) -> Tuple[int, ...]:
        return self._shape_of(self._trt._scenario.io[binding])

    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
        return self._set_batch(shape)

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return self._shape_of(self._engine._spec(name))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._addresses[name] = int(memory)
        return True

    def execute_async_v2(self, bindings: Sequence[int], stream_handle: int,
                         input_consumed: Any = None) -> bool:
        io = self._trt._scenario.io
        return self._enqueue({spec.name: int(bindings[i]) for i, spec in enumerate(io)},
                             stream_handle)

    def execute_async_v3(self, stream_handle: int) -> bool:
        return self._enqueue(dict(self._addresses), stream_handle)

    def _enqueue(self, addresses: Dict[str, int], stream_handle: int) -> bool:
        scenario = self._trt._scenario
        if not scenario.enqueue_ok:
            return False
        gpu = scenario.gpu
        if gpu is None:
            return True
        source = self._input()
        target = next(t for t in scenario.io if not t.is_input)
        in_shape, out_shape = self._shape_of(source), self._shape_of(target)
        in_type = _nptype(getattr(self._trt.DataType, source.dtype))
        out_type = _nptype(getattr(self._trt.DataType, target.dtype))

        def kernel() -> None:
            images = gpu.read(addresses[source.name], in_shape, in_type)
            rows = images.reshape(len(images), -1)[:, :out_shape[1]].astype(np.float32)
            out = np.resize(rows, out_shape).astype(out_type)
            gpu.write(addresses[target.name], out)

        gpu.enqueue(stream_handle, kernel, "tensorrt execute",
                    reads=[addresses[source.name]], writes=[addresses[target.name]])
        return True


BEHAVIOURS = {
    "IHostMemory": HostMemoryBehaviour, "ITimingCache": TimingCacheBehaviour,
    "ITensor": TensorBehaviour, "ILayer": LayerBehaviour, "INetworkDefinition": NetworkBehaviour,
    "ParserError": ParserErrorBehaviour, "OnnxParser": OnnxParserBehaviour,
    "IBuilderConfig": ConfigBehaviour, "Builder": BuilderBehaviour,
    "IOptimizationProfile": ProfileBehaviour, "Runtime": RuntimeBehaviour,
    "ICudaEngine": EngineBehaviour, "IExecutionContext": ContextBehaviour,
}  # type: Dict[str, type]


def behaviour_members() -> List[Tuple[str, str]]:
    """``(real class, member)`` for every member a behaviour defines (checked against surfaces)."""
    return [(real, name) for real, behaviour in sorted(BEHAVIOURS.items())
            for name in _public_members(behaviour)]
