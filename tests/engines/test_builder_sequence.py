"""The TensorRT calls a build makes, on stand-ins of every committed release's API.

``tensorrt`` is replaced by tests/engines/fake_tensorrt.py (derived from the real surfaces of
8.2.1, 8.6.1, 10.3.0 and 11.4.0.106: a missing attribute or a wrong argument name fails as it
would on that release), the CUDA driver and pycuda by tests/engines/fake_gpu.py. The builder
"builds" by returning fixed bytes. These tests prove which calls cvnet.engines.builder makes, on
which GPU, and what it writes around them (plan, sidecar, timing cache, calibration cache,
messages). They do not prove that TensorRT builds a working engine: that is
tests/engines/test_trt_runner.py, on a GPU.
"""

import json
import logging
import shutil
import weakref

import numpy as np
import pytest

from cvnet.core.artifact import read_sidecar
from cvnet.engines import builder as builder_module
from cvnet.engines.build_policy import BuildOptions
from cvnet.engines.builder import build_engine
from cvnet.engines.errors import EngineBuildError, EngineError
from cvnet.engines.metadata import engine_info
from tests.engines import fake_gpu
from tests.engines import fake_tensorrt as fake
from tests.fixtures import TINY_IMAGES, TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device

ATTENTION = "/stages.0/stages.0.0/filters.1/"
LAYERS = (fake.LayerSpec("/stem/conv/Conv", "CONVOLUTION"),
          fake.LayerSpec(ATTENTION + "MatMul", "MATRIX_MULTIPLY"),
          fake.LayerSpec(ATTENTION + "ReduceMax", "REDUCE"),
          fake.LayerSpec(ATTENTION + "Softmax", "SOFTMAX"),
          fake.LayerSpec(ATTENTION + "Shape", "SHAPE", ("INT32",)),
          fake.LayerSpec("/stages.0/stages.0.0/collaboration/Softmax", "SOFTMAX"))


@pytest.fixture
def onnx_copy(tmp_path):
    path = str(tmp_path / "cvnet.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path)
    return path


@pytest.fixture
def gpu(monkeypatch):
    """One pretend Jetson Nano GPU and a desktop one, behind the CUDA driver and pycuda."""
    gpu = fake_gpu.FakeGpu([fake_gpu.NANO, fake_gpu.DESKTOP])
    gpu.install(monkeypatch)
    yield gpu


def _use(monkeypatch, gpu, version, **scenario):
    trt = fake.tensorrt(version, layers=LAYERS, gpu=gpu, **scenario)
    monkeypatch.setattr(builder_module, "require", lambda module, purpose: trt)
    return trt


@pytest.fixture(autouse=True)
def _track_builders(monkeypatch):
    """Keeps every stand-in Builder made, to ask it which GPU it was made and built on."""
    made = []
    original = fake.BuilderBehaviour.__init__

    def __init__(self, logger):
        original(self, logger)
        made.append(self)

    monkeypatch.setattr(fake.BuilderBehaviour, "__init__", __init__)
    yield made


def test_fp16_build_on_the_8_2_surface(onnx_copy, tmp_path, monkeypatch, gpu, _track_builders):
    trt = _use(monkeypatch, gpu, "8.2.1")
    result = build_engine(onnx_copy, options=BuildOptions(verify_images=0))

    assert trt._log.of("Builder.create_network") == [{"flags": 1}]
    assert trt._log.of("OnnxParser.parse_from_file") == [{"model": onnx_copy}]
    assert trt._log.of("IBuilderConfig.max_workspace_size=") == [{"value": 512 << 20}]
    config = trt._log.of("Builder.build_serialized_network")[0]["config"]
    assert fake.flags(config) == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert trt._log.of("IOptimizationProfile.set_shape") == [
        {"input": "images", "min": (1, 3, 64, 64), "opt": (8, 3, 64, 64), "max": (8, 3, 64, 64)}]
    assert len(trt._log.of("Builder.build_serialized_network")) == 1
    assert len(trt._log.of("ILayer.precision=")) == 3

    assert result.plan_path == str(tmp_path / "cvnet.plan")
    with open(result.plan_path, "rb") as handle:
        assert handle.read() == b"PLAN"
    assert (tmp_path / "timing.cache").read_bytes() == b"timing cache bytes"
    metadata = read_sidecar(result.plan_path)
    info = engine_info(metadata)
    assert metadata.artifact_type == "plan" and metadata.file == "cvnet.plan"
    assert (info.precision, info.tensorrt_version, info.gpu_name) == ("fp16", "8.2.1",
                                                                      fake_gpu.NANO[0])
    assert (info.batch_min, info.batch_opt, info.batch_max) == (1, 8, 8)
    assert info.keep_fp32 == ("attention",) and len(info.fp32_layers) == 3
    assert info.onnx_sha256 == read_sidecar(onnx_copy).onnx_sha256 and info.parity is None
    assert [(b._device, b._built_on) for b in _track_builders] == [(0, [0])]
    assert gpu.problems() == []


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_fp16_build_with_memory_pools(onnx_copy, monkeypatch, gpu, version):
    trt = _use(monkeypatch, gpu, version)
    info = build_engine(onnx_copy, options=BuildOptions(verify_images=0)).info
    assert trt._log.of("IBuilderConfig.set_memory_pool_limit") == [
        {"pool": trt.MemoryPoolType.WORKSPACE, "pool_size": 512 << 20}]
    assert trt._log.of("Builder.create_network") == [{"flags": 1 if version == "8.6.1" else 0}]
    assert info.precision == "fp16" and len(info.fp32_layers) == 3


def test_tensorrt_11_build_says_the_engine_will_be_fp32(onnx_copy, monkeypatch, caplog, gpu):
    trt = _use(monkeypatch, gpu, "11.4.0.106")
    with caplog.at_level(logging.WARNING):
        result = build_engine(onnx_copy, options=BuildOptions(verify_images=0,
                                                              timing_cache=None))
    assert trt._log.of("Builder.create_network") == [{"flags": 0}]
    config = trt._log.of("Builder.build_serialized_network")[0]["config"]
    assert fake.flags(config) == []  # no FP16 flag, no precision constraints exist
    assert trt._log.of("IBuilderConfig.set_memory_pool_limit") == [
        {"pool": trt.MemoryPoolType.WORKSPACE, "pool_size": 512 << 20}]
    assert "will be FP32" in caplog.text and "cvnet-export --precision fp16" in caplog.text
    info = engine_info(read_sidecar(result.plan_path))
    assert info.precision == "fp32" and info.fp32_layers == () and info.timing_cache is None


def test_build_runs_on_the_gpu_asked_for(onnx_copy, monkeypatch, gpu, _track_builders):
    """``--device 1``: the builder is made and builds with GPU 1's primary context current."""
    _use(monkeypatch, gpu, "10.3.0")
    info = build_engine(onnx_copy, options=BuildOptions(verify_images=0, device=1)).info
    assert [(b._device, b._built_on) for b in _track_builders] == [(1, [1])]
    assert (info.gpu_name, info.compute_capability) == (fake_gpu.DESKTOP[0], "8.6")
    assert gpu.problems() == []  # popped and released


def test_a_missing_gpu_is_named(onnx_copy, monkeypatch, gpu):
    _use(monkeypatch, gpu, "10.3.0")
    with pytest.raises(EngineError, match=r"cuDeviceGet\(5\) failed .*invalid device"):
        build_engine(onnx_copy, options=BuildOptions(verify_images=0, device=5))


@pytest.mark.parametrize("how", ["foreign", "corrupt", "complains"])
def test_refused_timing_cache_is_replaced_and_reported(onnx_copy, tmp_path, monkeypatch, gpu,
                                                       caplog, how):
    (tmp_path / "timing.cache").write_bytes(b"cache of another GPU")
    _use(monkeypatch, gpu, "8.6.1", timing_cache=how)
    with caplog.at_level(logging.WARNING):
        build_engine(onnx_copy, options=BuildOptions(verify_images=0))
    assert "timing cache {} (20 bytes) is not used".format(tmp_path / "timing.cache") in caplog.text
    if how != "foreign":
        assert "TensorRT said: " in caplog.text and "will not be used" in caplog.text
    assert (tmp_path / "timing.cache").read_bytes() == b"timing cache bytes"  # replaced


def test_parser_errors_are_all_in_the_message(onnx_copy, monkeypatch, gpu):
    errors = (fake.ParseErrorSpec("Unsupported ONNX data type: UINT8 (2)", 0),
              fake.ParseErrorSpec("Resize scales must be an initializer", 41))
    _use(monkeypatch, gpu, "8.2.1", parse_errors=errors)
    with pytest.raises(EngineBuildError) as caught:
        build_engine(onnx_copy)
    message = str(caught.value)
    assert "cannot parse" in message and "(2 error(s))" in message
    assert "node 0: Unsupported ONNX data type: UINT8 (2)" in message
    assert "node 41: Resize scales must be an initializer" in message
    assert gpu.problems() == []


@pytest.mark.parametrize("scenario, watched", [
    ({"parse_errors": (fake.ParseErrorSpec("Unsupported ONNX data type: UINT8 (2)", 0),)},
     ["builder", "parser"]),
    # the build itself fails; the stand-in's call log keeps the config it was given, and the
    # config its builder, so only the parser can be watched here
    ({"plan": None}, ["parser"]),
])
def test_a_failed_build_drops_its_tensorrt_objects_before_the_context_is_popped(
        onnx_copy, monkeypatch, gpu, _track_builders, scenario, watched):
    """The exception's traceback must not keep the builder and parser alive while the primary
    context is popped and released: TensorRT would destroy them later, without a context."""
    made = []  # weak references only (the autouse fixture keeps strong ones: taken back here)
    tracked_builder = fake.BuilderBehaviour.__init__
    tracked_parser = fake.OnnxParserBehaviour.__init__

    def builder_init(self, logger):
        tracked_builder(self, logger)
        _track_builders.remove(self)
        made.append(("builder", weakref.ref(self)))

    def parser_init(self, network, logger):
        tracked_parser(self, network, logger)
        made.append(("parser", weakref.ref(self)))

    monkeypatch.setattr(fake.BuilderBehaviour, "__init__", builder_init)
    monkeypatch.setattr(fake.OnnxParserBehaviour, "__init__", parser_init)
    alive_at_pop = []
    pop = gpu.driver.cuCtxPopCurrent_v2

    def recording_pop(context):
        alive_at_pop.append([name for name, ref in made if name in watched and ref() is not None])
        return pop(context)

    monkeypatch.setattr(gpu.driver, "cuCtxPopCurrent_v2", recording_pop)
    _use(monkeypatch, gpu, "8.2.1", **scenario)
    with pytest.raises(EngineBuildError):
        build_engine(onnx_copy, options=BuildOptions(verify_images=0))
    assert [name for name, _ in made] == ["builder", "parser"]
    assert alive_at_pop == [[]]
    assert gpu.problems() == []


def test_failed_build_writes_nothing_and_says_what_to_try(onnx_copy, tmp_path, monkeypatch, gpu):
    _use(monkeypatch, gpu, "8.2.1", plan=None)
    with pytest.raises(EngineBuildError, match=r"could not build.*swap.*--workspace, now 512 MiB"):
        build_engine(onnx_copy, options=BuildOptions(verify_images=0))
    assert not (tmp_path / "cvnet.plan").exists()
    assert not (tmp_path / "cvnet.plan.json").exists()
    assert gpu.problems() == []


def test_fp32_build_pins_nothing_and_static_batch_has_no_profile(onnx_copy, monkeypatch, gpu):
    trt = _use(monkeypatch, gpu, "8.2.1", network_input=(4, 3, 64, 64))
    result = build_engine(onnx_copy, options=BuildOptions(fp16=False, verify_images=0))
    config = trt._log.of("Builder.build_serialized_network")[0]["config"]
    assert fake.flags(config) == [] and not trt._log.of("IBuilderConfig.add_optimization_profile")
    info = engine_info(read_sidecar(result.plan_path))
    assert (info.precision, info.dynamic_batch, info.batch_min, info.batch_max) == (
        "fp32", False, 4, 4)


# ---------------------------------------------------------------------------------------------
# INT8 (TensorRT 8.x-10.x on GPUs with fast INT8)


@pytest.fixture
def calib_dir(tmp_path):
    """Seven calibration images (the fixture's)."""
    folder = tmp_path / "calib"
    shutil.copytree(TINY_IMAGES, str(folder))
    return str(folder)


def _int8(onnx_copy, calib_dir, **changes):
    options = dict(int8=True, calib_dir=calib_dir, verify_images=0, batch=(1, 2, 8), device=1)
    options.update(changes)
    return build_engine(onnx_copy, options=BuildOptions(**options))


@pytest.mark.parametrize("version", ["8.2.1", "8.6.1", "10.3.0"])
def test_int8_calibrates_on_whole_batches_only(onnx_copy, calib_dir, monkeypatch, gpu, caplog,
                                               version):
    trt = _use(monkeypatch, gpu, version)
    with caplog.at_level(logging.INFO):
        info = _int8(onnx_copy, calib_dir).info
    calibrated = trt._log.of("calibrated")[0]
    assert not calibrated["from_cache"]
    batches = calibrated["batches"]
    assert len(batches) == 3 and all(b.shape == (2, 3, 64, 64) for b in batches)
    assert all(np.abs(row).max() > 0 for batch in batches for row in batch)  # no zero padding
    assert "the last 1 image(s) do not fill a batch of 2" in caplog.text
    config = trt._log.of("Builder.build_serialized_network")[0]["config"]
    assert fake.flags(config) == ["FP16", "OBEY_PRECISION_CONSTRAINTS", "INT8"]
    assert trt._log.of("IBuilderConfig.set_calibration_profile")
    assert info.precision == "int8"
    assert info.int8_calibration == {"calibrator": "IInt8EntropyCalibrator2", "images": 6,
                                     "files": 7, "batch": 2, "cache": "cvnet.plan.calib",
                                     "cache_reused": False}
    assert gpu.problems() == []


def test_int8_with_fp32_does_not_set_fp16(onnx_copy, calib_dir, monkeypatch, gpu):
    trt = _use(monkeypatch, gpu, "10.3.0")
    info = _int8(onnx_copy, calib_dir, fp16=False).info
    config = trt._log.of("Builder.build_serialized_network")[0]["config"]
    assert fake.flags(config) == ["INT8"] and info.fp32_layers == ()


def test_calibration_cache_is_reused_only_for_its_own_model(onnx_copy, calib_dir, tmp_path,
                                                            monkeypatch, gpu, caplog):
    trt = _use(monkeypatch, gpu, "10.3.0")
    _int8(onnx_copy, calib_dir)
    cache = tmp_path / "cvnet.plan.calib"
    record = json.loads((tmp_path / "cvnet.plan.calib.json").read_text())
    assert record["onnx_sha256"] == read_sidecar(onnx_copy).onnx_sha256
    assert record["input_shape"] == [3, 64, 64] and cache.exists()

    trt = _use(monkeypatch, gpu, "10.3.0")
    assert _int8(onnx_copy, calib_dir).info.int8_calibration["cache_reused"] is True
    assert trt._log.of("calibrated")[0]["from_cache"]

    record["onnx_sha256"] = "0" * 64  # the cache of another export
    (tmp_path / "cvnet.plan.calib.json").write_text(json.dumps(record))
    trt = _use(monkeypatch, gpu, "10.3.0")
    with caplog.at_level(logging.WARNING):
        info = _int8(onnx_copy, calib_dir).info
    assert "not using calibration cache" in caplog.text and "onnx_sha256 differs" in caplog.text
    assert not trt._log.of("calibrated")[0]["from_cache"] and info.int8_calibration["images"] == 6

    (tmp_path / "cvnet.plan.calib.json").unlink()  # a cache without its record
    trt = _use(monkeypatch, gpu, "10.3.0")
    _int8(onnx_copy, calib_dir)
    assert not trt._log.of("calibrated")[0]["from_cache"]
    assert gpu.problems() == []


def test_fewer_calibration_images_than_a_batch_are_refused_before_building(
        onnx_copy, calib_dir, monkeypatch, gpu):
    trt = _use(monkeypatch, gpu, "10.3.0")
    with pytest.raises(EngineBuildError, match=r"7 image\(s\), fewer than one calibration batch "
                                               r"of 8"):
        _int8(onnx_copy, calib_dir, batch=(1, 8, 8))
    assert not trt._log.of("Builder.build_serialized_network")
    assert gpu.problems() == []


def test_int8_is_refused_on_tensorrt_11(onnx_copy, calib_dir, monkeypatch, gpu):
    _use(monkeypatch, gpu, "11.4.0.106")
    with pytest.raises(EngineBuildError, match="no INT8 calibrators"):
        _int8(onnx_copy, calib_dir)
    assert gpu.problems() == []
