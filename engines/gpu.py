"""The CUDA driver API through ctypes: which GPU this is, and its primary context.

The builder records the GPU in the plan's sidecar and the TensorRT runtime compares it before
deserialising. Both ask the CUDA driver (``libcuda.so.1``, present wherever an NVIDIA driver
is, including Jetson L4T) directly, so neither needs pycuda for it and nothing is compiled:
:func:`gpu_info` uses ``cuInit``, ``cuDeviceGet``, ``cuDeviceGetName`` and
``cuDeviceGetAttribute`` and creates no context; :func:`gpus` lists every device
(``cuDeviceGetCount``) for the machine probe (:mod:`cvnet.engines.machine`), which so needs no
``nvidia-smi`` (a Jetson has none).

:func:`primary_context` makes a device's *primary* context (the one TensorRT's CUDA runtime
calls and pycuda's ``retain_primary_context`` use) current on the calling thread, so that
``cvnet-build --device N`` builds on GPU N; :func:`release_pycuda_context` ends a pycuda-retained
one without leaving it on the thread's context stack. Both are checked here only against a
stand-in driver (tests/engines/fake_gpu.py), never on a GPU.
"""

import ctypes
from typing import Any, List, NamedTuple, Optional, Union

from cvnet.core.errors import ConfigError
from cvnet.engines.errors import EngineError


def device_ordinal(device: Union[int, str, None]) -> Optional[int]:
    """The CUDA device a runner's ``device`` option names, in any spelling it is given.

    One reading for every runner (:func:`cvnet.engines.open_engine`'s ``device=``): an int ``N``,
    ``"N"``, ``"cuda:N"`` -> ``N``; ``"cuda"`` -> 0; ``"cpu"`` or None -> None (no GPU).

    Raises:
        ConfigError: Anything else, naming the accepted spellings.
    """
    if device is None:
        return None
    text = "" if isinstance(device, bool) else str(device).strip().lower()
    if text == "cpu":
        return None
    if text == "cuda":
        return 0
    number = text[len("cuda:"):] if text.startswith("cuda:") else text
    if not number.isdigit():
        raise ConfigError("device {!r}: expected cpu, cuda, cuda:N or a GPU number N >= 0".format(
            device))
    return int(number)

_LIBRARIES = ("libcuda.so.1", "libcuda.so")
#: CUdevice_attribute values from cuda.h (stable since CUDA 4).
_CC_MAJOR, _CC_MINOR = 75, 76


class GpuInfo(NamedTuple):
    """One CUDA device.

    Attributes:
        index: Device ordinal.
        name: Device name as the driver reports it, e.g. ``"NVIDIA Tegra X1"``.
        compute_capability: ``"major.minor"``, e.g. ``"5.3"`` for the Jetson Nano.
    """

    index: int
    name: str
    compute_capability: str


def _load_driver() -> ctypes.CDLL:
    errors = []
    for name in _LIBRARIES:
        try:
            return ctypes.CDLL(name)
        except OSError as err:
            errors.append(str(err))
    raise EngineError("no CUDA driver here (cannot load {}: {}); this needs an NVIDIA GPU with its "
                      "driver (on a Jetson: inside a container, run it with --runtime "
                      "nvidia)".format(" or ".join(_LIBRARIES), "; ".join(errors)))


def _check(driver: ctypes.CDLL, result: int, call: str) -> None:
    if result != 0:
        text = ctypes.c_char_p()
        driver.cuGetErrorString(result, ctypes.byref(text))
        raise EngineError("CUDA driver call {} failed with error {} ({})".format(
            call, result, text.value.decode() if text.value else "no description"))


def gpu_info(index: int = 0) -> GpuInfo:
    """Returns the name and compute capability of CUDA device ``index``.

    Raises:
        EngineError: No CUDA driver, or the driver call failed (no such device, driver too old).
    """
    driver = _load_driver()
    _check(driver, driver.cuInit(0), "cuInit")
    device = ctypes.c_int()
    _check(driver, driver.cuDeviceGet(ctypes.byref(device), index), "cuDeviceGet({})".format(index))
    name = ctypes.create_string_buffer(256)
    _check(driver, driver.cuDeviceGetName(name, len(name), device), "cuDeviceGetName")
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(driver, driver.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device),
           "cuDeviceGetAttribute(major)")
    _check(driver, driver.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device),
           "cuDeviceGetAttribute(minor)")
    return GpuInfo(index, name.value.decode("utf-8", "replace"),
                   "{}.{}".format(major.value, minor.value))


def gpus() -> List[GpuInfo]:
    """Every CUDA device the driver sees, in ordinal order (none on a machine without GPUs).

    Raises:
        EngineError: No CUDA driver, or a driver call failed.
    """
    driver = _load_driver()
    _check(driver, driver.cuInit(0), "cuInit")
    count = ctypes.c_int()
    _check(driver, driver.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    return [gpu_info(index) for index in range(count.value)]


def _function(driver: ctypes.CDLL, *names: str) -> Any:
    """The first of ``names`` the driver exports (``_v2`` entry points where CUDA has them)."""
    for name in names:
        if hasattr(driver, name):
            return getattr(driver, name)
    raise EngineError("the CUDA driver has none of {}; update the NVIDIA driver".format(
        ", ".join(names)))


class PrimaryContext(object):
    """Device ``index``'s primary context, retained and current on this thread inside ``with``.

    Leaving pops it and releases the retain, whatever happened inside.

    Raises:
        EngineError: No driver, no such device, or the driver refused (naming the call).
    """

    def __init__(self, index: int):
        self.index = int(index)
        self._driver = None  # type: Optional[ctypes.CDLL]
        self._device = ctypes.c_int()

    def __enter__(self) -> "PrimaryContext":
        driver = _load_driver()
        _check(driver, driver.cuInit(0), "cuInit")
        _check(driver, driver.cuDeviceGet(ctypes.byref(self._device), self.index),
               "cuDeviceGet({})".format(self.index))
        handle = ctypes.c_void_p()
        _check(driver, driver.cuDevicePrimaryCtxRetain(ctypes.byref(handle), self._device),
               "cuDevicePrimaryCtxRetain({})".format(self.index))
        release = _function(driver, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")
        try:
            _check(driver, _function(driver, "cuCtxPushCurrent_v2")(handle), "cuCtxPushCurrent")
        except BaseException:
            release(self._device)
            raise
        self._driver = driver
        return self

    def __exit__(self, *exc_info: Any) -> None:
        driver, self._driver = self._driver, None
        if driver is None:
            return
        popped = ctypes.c_void_p()
        try:
            _check(driver, _function(driver, "cuCtxPopCurrent_v2")(ctypes.byref(popped)),
                   "cuCtxPopCurrent")
        finally:
            release = _function(driver, "cuDevicePrimaryCtxRelease_v2",
                                "cuDevicePrimaryCtxRelease")
            _check(driver, release(self._device), "cuDevicePrimaryCtxRelease({})".format(
                self.index))


def primary_context(index: int) -> PrimaryContext:
    """``with primary_context(n):`` runs its body with GPU ``n``'s primary context current."""
    return PrimaryContext(index)


def release_pycuda_context(context: Any) -> None:
    """Releases a pycuda context from ``retain_primary_context`` + ``push``, and pops it.

    pycuda's ``detach`` on the current context releases the retain
    (``cuDevicePrimaryCtxRelease``) and takes it off pycuda's own stack, but the CUDA release
    never pops a context from the thread's stack (driver API documentation), so it is popped
    here. (Popping first would not do: ``detach`` on a context that is not current pushes it
    before releasing it, pycuda's ``context::detach``.) Call it on the thread that pushed it,
    with it current, after everything allocated in it is freed.

    Args:
        context: The pushed ``pycuda.driver.Context``.
    """
    context.detach()
    try:
        driver = _load_driver()
    except EngineError:  # pycuda worked, so a driver is there; nothing more can be done
        return
    popped = ctypes.c_void_p()
    _check(driver, _function(driver, "cuCtxPopCurrent_v2")(ctypes.byref(popped)),
           "cuCtxPopCurrent")
