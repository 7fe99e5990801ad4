"""Which GPU is this? Name and compute capability through the CUDA driver API (ctypes).

The builder records the GPU in the plan's sidecar and the TensorRT runtime compares it before
deserialising. Both ask the CUDA driver (``libcuda.so.1``, present wherever an NVIDIA driver
is, including Jetson L4T) directly, so neither needs pycuda for it and nothing is compiled.
Only the driver calls ``cuInit``, ``cuDeviceGet``, ``cuDeviceGetName`` and
``cuDeviceGetAttribute`` are used, no CUDA context is created.
"""

import ctypes
from typing import NamedTuple

from engines.errors import EngineError

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
