"""The CUDA driver calls: a clear error where there is no driver, a real answer where there is."""

import ctypes

import pytest

from cvnet.engines.errors import EngineError
from cvnet.engines.gpu import gpu_info, primary_context, release_pycuda_context

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


# ---------------------------------------------------------------------------------------------
# Primary contexts, on a stand-in driver (tests/engines/fake_gpu.py): the calls and their order,
# not CUDA itself


@pytest.fixture
def fake(monkeypatch):
    from tests.engines.fake_gpu import DESKTOP, NANO, FakeGpu

    gpu = FakeGpu([NANO, DESKTOP])
    gpu.install(monkeypatch)
    return gpu


def test_primary_context_is_current_inside_and_released_after(fake):
    with primary_context(1):
        assert fake.current_device() == 1 and fake.retains[1] == 1
    assert fake.current_device() is None and fake.problems() == []
    assert gpu_info(1).compute_capability == "8.6"


def test_primary_context_is_released_when_the_body_raises(fake):
    with pytest.raises(ValueError):
        with primary_context(0):
            raise ValueError("build failed")
    assert fake.problems() == []


def test_primary_context_of_a_missing_gpu_names_it(fake):
    with pytest.raises(EngineError, match=r"cuDeviceGet\(2\) failed with error 101 \(invalid "
                                          r"device ordinal\)"):
        with primary_context(2):
            pass
    assert fake.problems() == []


def test_released_pycuda_context_leaves_no_context_current(fake):
    import pycuda.driver as cuda

    with primary_context(0):
        context = cuda.Device(0).retain_primary_context()
        context.push()
        release_pycuda_context(context)
        assert fake.current_device() == 0 and fake.retains[0] == 1  # the build's own context
    assert fake.problems() == []
