"""The plan sidecar's engine block and the version/GPU check, as pure logic."""

import json

import pytest

from cvnet.core.artifact import metadata_from_dict, read_sidecar, sidecar_text
from cvnet.core.errors import MetadataError
from cvnet.engines.errors import EngineCompatibilityError
from cvnet.engines.gpu import GpuInfo
from cvnet.engines.metadata import (EngineInfo, check_compatible, compatibility_problems,
                                    engine_info, plan_sidecar)
from tests.fixtures import TINY_ONNX

pytestmark = pytest.mark.device

NANO = GpuInfo(0, "NVIDIA Tegra X1", "5.3")
INFO = EngineInfo(precision="fp16", tensorrt_version="8.2.1.8", gpu_name=NANO.name,
                  compute_capability="5.3", batch_min=1, batch_opt=4, batch_max=8,
                  dynamic_batch=True, workspace_bytes=512 << 20, build_time_s=321.5,
                  timing_cache="timing.cache", keep_fp32=("attention",),
                  fp32_layers=("/stages.0/stages.0.0/filters.1/MatMul",), plan_sha256="ab" * 32,
                  builder="cvnet-build test", created="2026-01-01T00:00:00+00:00")


def _plan_metadata(info=INFO):
    data = plan_sidecar(read_sidecar(TINY_ONNX), "cvnet_tiny.plan", info)
    return metadata_from_dict(json.loads(sidecar_text(data)))


def test_onnx_sidecar_has_no_engine_block():
    assert engine_info(read_sidecar(TINY_ONNX)) is None


def test_plan_sidecar_round_trips_through_the_artifact_reader():
    metadata = _plan_metadata()
    assert metadata.artifact_type == "plan" and metadata.file == "cvnet_tiny.plan"
    assert (metadata.batch_min, metadata.batch_max) == (1, 8)
    assert metadata.input_height == 64 and metadata.embedding_dim == 96  # the ONNX's keys
    assert engine_info(metadata) == INFO


def test_malformed_engine_block_is_refused_with_the_missing_keys():
    data = plan_sidecar(read_sidecar(TINY_ONNX), "x.plan", INFO)
    del data["engine"]["gpu_name"], data["engine"]["tensorrt_version"]
    with pytest.raises(MetadataError, match="lacks tensorrt_version, gpu_name"):
        engine_info(metadata_from_dict(data))
    data["engine"] = "fp16"
    with pytest.raises(MetadataError, match="expected an object"):
        engine_info(metadata_from_dict(data))


def test_same_release_and_gpu_is_compatible():
    assert compatibility_problems(INFO, "8.2.1.9", NANO) == []
    assert compatibility_problems(INFO, "8.2.1.8", None) == []  # GPU unknown: TensorRT checks


def test_other_tensorrt_release_is_refused_naming_both():
    with pytest.raises(EngineCompatibilityError) as caught:
        check_compatible("cvnet.plan", INFO, "8.0.1.6", NANO)
    message = str(caught.value)
    assert "TensorRT 8.2.1.8" in message and "TensorRT 8.0.1.6" in message
    assert "rebuild with cvnet-build" in message


def test_other_compute_capability_is_refused_naming_both_gpus():
    problems = compatibility_problems(INFO, "8.2.1.8", GpuInfo(0, "NVIDIA GeForce RTX 3060", "8.6"))
    assert len(problems) == 1
    assert "NVIDIA Tegra X1 (compute capability 5.3)" in problems[0]
    assert "NVIDIA GeForce RTX 3060 (compute capability 8.6)" in problems[0]


def test_other_gpu_name_with_the_same_capability_is_refused_unless_allowed():
    other = GpuInfo(0, "NVIDIA Tegra X1 (rev 2)", "5.3")
    assert "allow_other_gpu" in compatibility_problems(INFO, "8.2.1.8", other)[0]
    assert compatibility_problems(INFO, "8.2.1.8", other, allow_other_gpu=True) == []
