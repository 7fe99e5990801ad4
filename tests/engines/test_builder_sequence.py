"""The sequence of TensorRT calls a build makes, on stand-ins of the 8.2 and 11.x surfaces.

``tensorrt`` is replaced by tests/engines/fake_tensorrt.py's ``build_surface``: its builder
accepts the calls and returns fixed bytes instead of building anything, and the GPU query
returns a recorded Jetson Nano. These tests prove which calls engines.builder makes and what it
writes around them (plan, sidecar, timing cache, messages). They do not prove that TensorRT
builds a working engine: that is tests/engines/test_trt_runner.py, on a GPU.
"""

import logging
import shutil

import pytest

from cvnet.artifact import read_sidecar
from engines import builder as builder_module
from engines.builder import BuildOptions, build_engine
from engines.errors import EngineBuildError
from engines.gpu import GpuInfo
from engines.metadata import engine_info
from tests.engines import fake_tensorrt as fake
from tests.fixtures import TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device

NANO = GpuInfo(0, "NVIDIA Tegra X1", "5.3")
ATTENTION = "/stages.0/stages.0.0/filters.1/"


def _layers():
    return [fake.Layer("/stem/conv/Conv", "CONVOLUTION"),
            fake.Layer(ATTENTION + "MatMul", "MATRIX_MULTIPLY"),
            fake.Layer(ATTENTION + "ReduceMax", "REDUCE"),
            fake.Layer(ATTENTION + "Softmax", "SOFTMAX"),
            fake.Layer(ATTENTION + "Shape", "SHAPE", ("DataType.INT32",)),
            fake.Layer("/stages.0/stages.0.0/collaboration/Softmax", "SOFTMAX")]


@pytest.fixture
def onnx_copy(tmp_path):
    path = str(tmp_path / "cvnet.onnx")
    shutil.copy(TINY_ONNX, path)
    copy_sidecar(path)
    return path


def _use(monkeypatch, trt):
    monkeypatch.setattr(builder_module, "require", lambda module, purpose: trt)
    monkeypatch.setattr(builder_module, "gpu_info", lambda device=0: NANO)


def test_fp16_build_on_the_8_2_surface(onnx_copy, tmp_path, monkeypatch):
    trt, calls = fake.build_surface("8.2.1.8", _layers())
    _use(monkeypatch, trt)
    result = build_engine(onnx_copy, options=BuildOptions(verify_images=0))

    assert calls.log[:3] == [("Logger", ("WARNING",)), ("create_network", (1,)),
                             ("parse_from_file", (onnx_copy,))]
    assert trt.config.max_workspace_size == 512 << 20
    assert trt.config.flags == ["BuilderFlag.FP16", "BuilderFlag.OBEY_PRECISION_CONSTRAINTS"]
    assert ("profile.set_shape", ("images", (1, 3, 64, 64), (8, 3, 64, 64),
                                  (8, 3, 64, 64))) in calls.log
    assert calls.names()[-1] == "build_serialized_network"
    pinned = [layer.name for layer in trt.network.layers if layer.precision == "DataType.FLOAT"]
    assert pinned == [ATTENTION + "MatMul", ATTENTION + "ReduceMax", ATTENTION + "Softmax"]

    assert result.plan_path == str(tmp_path / "cvnet.plan")
    with open(result.plan_path, "rb") as handle:
        assert handle.read() == b"PLAN"
    assert (tmp_path / "timing.cache").read_bytes() == b"timing cache bytes"
    metadata = read_sidecar(result.plan_path)
    info = engine_info(metadata)
    assert metadata.artifact_type == "plan" and metadata.file == "cvnet.plan"
    assert (info.precision, info.tensorrt_version, info.gpu_name) == ("fp16", "8.2.1.8",
                                                                      NANO.name)
    assert (info.batch_min, info.batch_opt, info.batch_max) == (1, 8, 8)
    assert info.keep_fp32 == ("attention",) and len(info.fp32_layers) == 3
    assert info.onnx_sha256 == read_sidecar(onnx_copy).onnx_sha256 and info.parity is None


def test_tensorrt_11_build_says_the_engine_will_be_fp32(onnx_copy, monkeypatch, caplog):
    trt, calls = fake.build_surface("11.4.0.106", _layers())
    _use(monkeypatch, trt)
    with caplog.at_level(logging.WARNING):
        result = build_engine(onnx_copy, options=BuildOptions(verify_images=0,
                                                              timing_cache=None))
    assert calls.log[1] == ("create_network", (0,))
    assert trt.config.flags == []  # no FP16 flag, no precision constraints exist
    assert ("set_memory_pool_limit", ("MemoryPoolType.WORKSPACE", 512 << 20)) in calls.log
    assert "will be FP32" in caplog.text and "cvnet-export --half" in caplog.text
    info = engine_info(read_sidecar(result.plan_path))
    assert info.precision == "fp32" and info.fp32_layers == () and info.timing_cache is None


def test_parser_errors_are_all_in_the_message(onnx_copy, monkeypatch):
    errors = [fake.ParserError82("Unsupported ONNX data type: UINT8 (2)", 0, 1),
              fake.ParserError82("Resize scales must be an initializer", 41, 1)]
    trt, _ = fake.build_surface("8.2.1.8", _layers(), parse_errors=errors)
    _use(monkeypatch, trt)
    with pytest.raises(EngineBuildError) as caught:
        build_engine(onnx_copy)
    message = str(caught.value)
    assert "cannot parse" in message and "(2 error(s))" in message
    assert "node 0: Unsupported ONNX data type: UINT8 (2)" in message
    assert "node 41: Resize scales must be an initializer" in message


def test_failed_build_writes_nothing_and_says_what_to_try(onnx_copy, tmp_path, monkeypatch):
    trt, _ = fake.build_surface("8.2.1.8", _layers(), plan=None)
    _use(monkeypatch, trt)
    with pytest.raises(EngineBuildError, match=r"could not build.*swap.*--workspace, now 512 MiB"):
        build_engine(onnx_copy, options=BuildOptions(verify_images=0))
    assert not (tmp_path / "cvnet.plan").exists()
    assert not (tmp_path / "cvnet.plan.json").exists()


def test_fp32_build_pins_nothing_and_static_batch_has_no_profile(onnx_copy, monkeypatch):
    trt, calls = fake.build_surface("8.2.1.8", _layers(), input_shape=(4, 3, 64, 64))
    _use(monkeypatch, trt)
    result = build_engine(onnx_copy, options=BuildOptions(fp16=False, verify_images=0))
    assert trt.config.flags == [] and "add_optimization_profile" not in calls.names()
    info = engine_info(read_sidecar(result.plan_path))
    assert (info.precision, info.dynamic_batch, info.batch_min, info.batch_max) == (
        "fp32", False, 4, 4)
