"""The CUDA driver query: a clear error where there is no driver, a real answer where there is."""

import ctypes

import pytest

from engines.errors import EngineError
from engines.gpu import gpu_info

pytestmark = pytest.mark.device


def _driver_present():
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def test_without_a_cuda_driver_the_error_says_what_is_needed():
    if _driver_present():
        pytest.skip("a CUDA driver is installed here")
    with pytest.raises(EngineError, match=r"no CUDA driver here .*--runtime nvidia"):
        gpu_info(0)


@pytest.mark.gpu
def test_gpu_name_and_compute_capability():
    if not _driver_present():
        pytest.skip("no CUDA driver (libcuda.so.1) here")
    info = gpu_info(0)
    major, minor = (int(v) for v in info.compute_capability.split("."))
    assert info.name and major >= 3 and minor >= 0
