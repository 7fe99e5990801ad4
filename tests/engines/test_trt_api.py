"""cvnet's TensorRT code against TensorRT's real Python API of 8.2.1, 8.6.1, 10.3.0 and 11.4.0.106.

This proves names and signatures, never behaviour: no TensorRT build or inference runs here.

1. The committed surfaces (tests/engines/data/trt_api/, see tests/engines/trt_api.py) are what
   NVIDIA's bindings wheels really contain: each wheel this Python has one for is downloaded
   from PyPI (cached in ``~/.cache/cvnet/trt-bindings``), imported against stub libraries built
   with gcc, and compared with its committed file. 8.6.1 runs under Python 3.6 too (the device
   job), 10.3.0 and 11.4.0.106 from Python 3.8. 8.2.1 has no wheel; its surface is read from
   NVIDIA's pybind11 sources at tag 8.2.1. Without network or gcc the comparison is skipped
   with the reason, unless ``CVNET_REQUIRE_TRT_API=1`` (CI sets it), which makes it fail.
2. The stand-ins every TensorRT test uses (tests/engines/fake_tensorrt.py) are made from those
   surfaces, so (a) an attribute cvnet reaches on a release's path that the release lacks, or
   that is of another kind there, raises on that release's stand-in, and (c) so does a keyword
   argument the real method does not take: test_trt_compat.py, test_builder_sequence.py and
   test_trt_runner.py run cvnet's build and run paths on every release's stand-in. Here, (b):
   the stand-ins offer nothing a real release lacks and take the real argument names; and (c)
   statically: every keyword cvnet passes to a TensorRT method exists in every release that
   has the method.
"""

import ast
import copy
import glob
import inspect
import os
import sys

import pytest

from tests.device_modules import ROOT
from tests.engines import fake_tensorrt as fake
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


# ---------------------------------------------------------------------------------------------
# (b) The stand-ins offer nothing the real releases lack


def test_every_stand_in_member_exists_in_a_real_release():
    nowhere = [
        "{}.{}".format(real, name) for real, name in fake.behaviour_members()
        if not any(name in trt_api.load_surface(v)["classes"].get(real, {}).get("members", {})
                   for v in fake.VERSIONS)]
    assert not nowhere, ("fake_tensorrt defines {}, which no committed TensorRT release has "
                         "({}); remove it or correct its name".format(", ".join(nowhere),
                                                                      ", ".join(fake.VERSIONS)))


@pytest.mark.parametrize("version", fake.VERSIONS)
def test_stand_ins_have_exactly_the_real_members_with_the_real_arguments(version):
    """Making each stand-in class checks every behaviour against the release (StandInDrift)."""
    trt = fake.tensorrt(version)
    surface = trt_api.load_surface(version)
    for real in sorted(fake.BEHAVIOURS):
        if real not in surface["classes"]:
            assert not hasattr(trt, real)
            continue
        cls = getattr(trt, real)
        members = surface["classes"][real]["members"]
        public = {name for name in vars(cls) if not name.startswith("_") or name in members}
        public -= set(fake.PROTOCOL_STAND_INS)
        assert public == set(members), real
        for name, member in members.items():
            value = vars(cls)[name]
            if member["kind"] == "property":
                assert isinstance(value, property) and (value.fset is None) == bool(
                    member.get("readonly")), (real, name)
            elif member["kind"] == "method" and member.get("signatures"):
                assert callable(value), (real, name)


def test_a_stand_in_taking_other_argument_names_is_refused(monkeypatch):
    def set_shape(self, name, low, opt, high):  # the names of the old hand-written stand-in
        pass

    monkeypatch.setattr(fake.ProfileBehaviour, "set_shape", set_shape)
    with pytest.raises(fake.StandInDrift, match=r"IOptimizationProfile\.set_shape .*takes "
                                                r"set_shape\(.*input"):
        fake.tensorrt("10.3.0").IOptimizationProfile


@pytest.mark.parametrize("version", fake.VERSIONS)
def test_a_wrong_keyword_or_attribute_fails_on_the_stand_in_as_on_the_real_module(version):
    trt = fake.tensorrt(version)
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(TypeError, match="real signatures"):
        config.set_timing_cache(cache=None, ignore=False)
    with pytest.raises(AttributeError):
        config.set_memory_pool_limits
    with pytest.raises(AttributeError):
        config.no_such_setting = 1


# ---------------------------------------------------------------------------------------------
# (c) Keyword arguments cvnet passes to TensorRT methods


def _tensorrt_methods():
    """Method name -> [(release, class, signatures)] over every committed surface."""
    methods = {}
    for version in trt_api.VERSIONS:
        for real, info in trt_api.load_surface(version)["classes"].items():
            for name, member in info["members"].items():
                if member["kind"] in ("method", "staticmethod"):
                    methods.setdefault(name, []).append((version, real, member.get(
                        "signatures", [])))
    return methods


#: Files that call TensorRT (directly or through trt_compat).
TENSORRT_CALLERS = ("engines/trt_compat.py", "engines/builder.py", "engines/trt_runner.py",
                    "engines/calibrator.py")


def test_every_keyword_cvnet_passes_to_a_tensorrt_method_exists():
    methods = _tensorrt_methods()
    problems, checked = [], 0
    for path in TENSORRT_CALLERS:
        tree = ast.parse(open(os.path.join(ROOT, path)).read())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.keywords and node.func.attr in methods):
                continue
            names = [k.arg for k in node.keywords if k.arg]
            for version, real, signatures in methods[node.func.attr]:
                params = [trt_api.signature_params(s) for s in signatures]
                known = [p for p in params if p is not None]
                if known and not any(set(names) <= {p.name for p in ps} for ps in known):
                    problems.append("{}:{} {}({}=...) but TensorRT {}'s {}.{} takes {}".format(
                        path, node.lineno, node.func.attr, "=..., ".join(names), version, real,
                        node.func.attr, " | ".join(signatures)))
            checked += 1
    assert checked, "no keyword call to a TensorRT method found: is this test still looking?"
    assert not problems, "\n".join(problems)


def test_the_keyword_check_sees_execute_async_v2():
    source = inspect.getsource(__import__("cvnet.engines.trt_compat", fromlist=["execute"]).execute)
    assert "execute_async_v2(bindings=" in source


def test_committed_surfaces_exist_for_every_release():
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(trt_api.SURFACE_DIR,
                                                                       "surface-*.json")))
    assert found == sorted("surface-{}.json".format(v) for v in trt_api.VERSIONS)
