"""cvnet's TensorRT code against TensorRT's real Python API of 8.2.1, 8.6.1, 10.3.0 and 11.4.0.106.

This proves names and signatures, never behaviour: no TensorRT build or inference runs here.

1. The committed surfaces (tests/engines/data/trt_api/, see tests/engines/trt_api.py) are what
   NVIDIA's bindings wheels really contain: each wheel this Python has one for is downloaded
   from PyPI (cached in ``~/.cache/cvnet/trt-bindings``), imported against stub libraries built
   with gcc, and compared with its committed file. 8.6.1 runs under Python 3.6 too (the device
   job), 10.3.0 and 11.4.0.106 from Python 3.8. 8.2.1 has no wheel; its surface is read from
   NVIDIA's pybind11 sources at tag 8.2.1. Without network or gcc the comparison is skipped
   with the reason, unless ``CVNET_REQUIRE_TRT_API=1`` (CI sets it), which makes it fail.
"""

import copy
import glob
import os
import sys

import pytest

from tests.device_modules import ROOT
from tests.engines import trt_api

pytestmark = pytest.mark.device


def _dotted(version):
    return ".".join(str(part) for part in version)


def _unavailable(reason):
    if os.environ.get(trt_api.REQUIRE_ENV) == "1":
        pytest.fail("{} ({}=1: this check must run here; install gcc and binutils and let pip "
                    "reach PyPI)".format(reason, trt_api.REQUIRE_ENV))
    pytest.skip(reason)


@pytest.mark.parametrize("version", list(trt_api.WHEELS))
def test_real_bindings_match_the_committed_surface(version, tmp_path):
    wheel = trt_api.WHEELS[version]
    if not trt_api.python_supported(wheel):
        pytest.skip("NVIDIA publishes no {} {} wheel for CPython {} (only {} to {}); the "
                    "other CI job reads it".format(
                        wheel.package, version, _dotted(sys.version_info[:2]),
                        _dotted(wheel.python_min), _dotted(wheel.python_max)))
    try:
        live = trt_api.live_surface(wheel, str(tmp_path))
    except trt_api.Unavailable as err:
        _unavailable("cannot read TensorRT {}'s real API here: {}".format(version, err))
    problems = trt_api.differences(trt_api.load_surface(version), live)
    assert not problems, (
        "TensorRT {} as the {} wheel has it differs from {}:\n  {}\nIf the wheel changed, "
        "regenerate it (python3 tests/engines/trt_api.py dump {}) and rerun the engines "
        "tests".format(version, wheel.package, os.path.relpath(trt_api.surface_path(version),
                                                               ROOT),
                       "\n  ".join(problems), version))


def test_a_changed_argument_name_is_a_difference():
    committed = trt_api.load_surface("8.6.1")
    changed = copy.deepcopy(committed)
    method = changed["classes"]["IExecutionContext"]["members"]["execute_async_v2"]
    method["signatures"] = [s.replace("stream_handle", "stream") for s in method["signatures"]]
    del changed["enums"]["BuilderFlag"]["FP16"]
    problems = trt_api.differences(committed, changed)
    assert len(problems) == 2
    assert problems[0].startswith("classes.IExecutionContext.members.execute_async_v2.signatures")
    assert problems[1] == "enums.BuilderFlag.FP16: committed only"


@pytest.mark.parametrize("signature, expected", [
    ("set_shape(self: tensorrt.IOptimizationProfile, input: str, min: tensorrt.Dims, "
     "opt: tensorrt.Dims, max: tensorrt.Dims) -> None",
     [("input", False), ("min", False), ("opt", False), ("max", False)]),
    ("execute_async_v2(self: tensorrt.IExecutionContext, bindings: List[int], stream_handle: int, "
     "input_consumed: capsule = None) -> bool",
     [("bindings", False), ("stream_handle", False), ("input_consumed", True)]),
    ("execute_async_v2(bindings, stream_handle, input_consumed=...)",  # from NVIDIA's sources
     [("bindings", False), ("stream_handle", False), ("input_consumed", True)]),
    ("get_timing_cache(self: tensorrt.IBuilderConfig) -> tensorrt.ITimingCache", []),
])
def test_signature_parameters(signature, expected):
    assert [tuple(p) for p in trt_api.signature_params(signature)] == expected


def test_signature_parameters_unknown():
    assert trt_api.signature_params("__init__(*args, **kwargs)") is None
    assert trt_api.signature_params("get_timing_cache(?)") is None


def test_committed_surfaces_exist_for_every_release():
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(trt_api.SURFACE_DIR,
                                                                       "surface-*.json")))
    assert found == sorted("surface-{}.json".format(v) for v in trt_api.VERSIONS)
