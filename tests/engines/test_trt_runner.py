"""The TensorRT runner: checks that run anywhere, on stand-ins, and real runs on a GPU.

Tests marked ``trt`` and ``gpu`` build the tiny fixture graph into plans with the installed
TensorRT and run them with pycuda; they are skipped, with the reason, where TensorRT, pycuda or a
CUDA GPU is missing. The others need neither: they check what the runner refuses before
TensorRT is imported, and the sequence of TensorRT, pycuda and CUDA driver calls it makes on
stand-ins (tests/engines/fake_tensorrt.py, derived from the real API surfaces of each release,
and tests/engines/fake_gpu.py, a hand-written pycuda and driver over pretend memory and streams).
Those prove the order and names of the calls (context push and release, shapes read after the
input shape is set, synchronisation before anything is freed, FP16 conversion), never that
TensorRT, pycuda or a GPU behave as the stand-ins do.
"""

import json
import os
import shutil
import sys
import threading

import numpy as np
import pytest

from cvnet.core.artifact import read_sidecar, sidecar_text
from cvnet.core.fileio import sha256_bytes
from cvnet.core.preprocess import decode_image
from cvnet.engines import open_engine
from cvnet.engines.errors import (EngineCompatibilityError, EngineError, EngineLoadError,
                                  MissingDependencyError)
from cvnet.engines.metadata import EngineInfo, plan_sidecar
from cvnet.engines.trt_runner import TrtRunner
from tests.engines import fake_gpu
from tests.engines import fake_tensorrt as fake
from tests.fixtures import TINY_ONNX, load_expected, row_cosine, tiny_image_paths

PLAN_BYTES = b"stand-in bytes: not a TensorRT plan" * 10


def _write_plan(folder, data=PLAN_BYTES, recorded=None, **changes):
    """A .plan file and a plan sidecar whose engine block records ``recorded``'s hash."""
    plan = os.path.join(str(folder), "cvnet_tiny.plan")
    with open(plan, "wb") as handle:
        handle.write(data)
    info = EngineInfo(precision="fp16", tensorrt_version="8.2.1.8", gpu_name="NVIDIA Tegra X1",
                      compute_capability="5.3", batch_min=1, batch_opt=4, batch_max=8,
                      dynamic_batch=True, workspace_bytes=1 << 29, build_time_s=1.0,
                      plan_sha256=sha256_bytes(data if recorded is None else recorded))
    info = info._replace(**changes)
    with open(plan + ".json", "w") as handle:
        handle.write(sidecar_text(plan_sidecar(read_sidecar(TINY_ONNX), "cvnet_tiny.plan", info)))
    return plan


@pytest.mark.device
def test_engine_suffix_opens_the_tensorrt_runner(tmp_path):
    assert isinstance(open_engine(_write_plan(tmp_path)), TrtRunner)
    shutil.copy(_write_plan(tmp_path), str(tmp_path / "model.engine"))
    assert isinstance(open_engine(str(tmp_path / "model.engine")), TrtRunner)


@pytest.mark.device
def test_plan_that_does_not_match_its_sidecar_is_refused_before_tensorrt(tmp_path):
    plan = _write_plan(tmp_path, data=PLAN_BYTES[:100], recorded=PLAN_BYTES)  # truncated copy
    runner = open_engine(plan)
    with pytest.raises(EngineLoadError, match=r"does not match its sidecar .*100 bytes.*rebuild"):
        runner.activate()
    assert not runner.active


@pytest.mark.device
def test_without_tensorrt_the_runner_says_what_to_install(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingDependencyError, match=r"needs tensorrt.*JetPack"):
        open_engine(_write_plan(tmp_path)).activate()


# ---------------------------------------------------------------------------------------------
# On stand-ins of TensorRT, pycuda and the CUDA driver


@pytest.fixture
def gpu(monkeypatch):
    gpu = fake_gpu.FakeGpu()
    gpu.install(monkeypatch)
    return gpu


def _stand_in_plan(monkeypatch, tmp_path, gpu, version, **scenario):
    trt = fake.tensorrt(version, gpu=gpu, **scenario)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt, _write_plan(tmp_path, tensorrt_version=trt.__version__)


def _batch(count):
    return np.random.RandomState(count).uniform(-2, 2, (count, 3, 64, 64)).astype(np.float32)


def _rows(batch):
    """What the stand-in engine computes: each output row is its input row's first 96 values."""
    return batch.reshape(len(batch), -1)[:, :96]


@pytest.mark.device
@pytest.mark.parametrize("version", fake.VERSIONS)
def test_runner_on_stand_ins_runs_batches_and_leaves_nothing_behind(monkeypatch, tmp_path, gpu,
                                                                    version):
    trt, plan = _stand_in_plan(monkeypatch, tmp_path, gpu, version)
    with open_engine(plan) as runner:
        assert (runner.spec.batch_min, runner.spec.batch_max) == (1, 8)
        out = runner.infer(_batch(11))  # a batch of 8, then one of 3
    np.testing.assert_array_equal(out, _rows(_batch(11)))
    assert gpu.problems() == []  # synchronised, freed, popped, released
    shutdown = [e for e in gpu.events if e.split()[0] in ("synchronize", "free", "release",
                                                          "pop", "clear_context_caches")]
    assert shutdown[-7:] == ["synchronize", "synchronize", "free", "free", "release 0", "pop",
                             "clear_context_caches"]
    shape_calls = [n for n in trt._log.names()
                   if n.endswith(("set_input_shape", "set_binding_shape", "get_tensor_shape",
                                  "get_binding_shape")) and n.startswith("IExecutionContext")]
    # the largest batch at load, then per batch: set the input shape, read the output's
    assert shape_calls[-2:] == [shape_calls[-4], shape_calls[-3]] and len(shape_calls) == 6


@pytest.mark.device
@pytest.mark.parametrize("version", fake.VERSIONS)
def test_fp16_inputs_and_outputs_are_converted_on_the_host(monkeypatch, tmp_path, gpu, version):
    io = (fake.TensorSpec("images", True, (-1, 3, 64, 64), "HALF"),
          fake.TensorSpec("embeddings", False, (-1, 96), "HALF"))
    _, plan = _stand_in_plan(monkeypatch, tmp_path, gpu, version, io=io)
    with open_engine(plan) as runner:
        assert runner.spec.dtype == "float32"
        out = runner.infer(_batch(5))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _rows(_batch(5)), rtol=1e-3, atol=1e-3)
    assert not np.array_equal(out, _rows(_batch(5)))  # it did go through float16
    assert gpu.problems() == []


@pytest.mark.device
def test_output_shape_is_read_from_tensorrt_not_assumed(monkeypatch, tmp_path, gpu):
    _, plan = _stand_in_plan(monkeypatch, tmp_path, gpu, "10.3.0", output_rows=1)
    with open_engine(plan) as runner:
        with pytest.raises(EngineError, match=r"for a batch of 4 TensorRT reports output "
                                              r"embeddings of shape \(1, 96\)"):
            runner.infer(_batch(4))
    assert gpu.problems() == []


@pytest.mark.device
@pytest.mark.parametrize("version", ["8.2.1", "11.4.0.106"])
def test_failed_enqueue_synchronises_before_anything_is_freed(monkeypatch, tmp_path, gpu,
                                                              version):
    _, plan = _stand_in_plan(monkeypatch, tmp_path, gpu, version, enqueue_ok=False)
    with open_engine(plan) as runner:
        with pytest.raises(EngineError, match="failed to enqueue a batch of 3"):
            runner.infer(_batch(3))
        assert not any(gpu.streams.values())  # synchronised before the error left _infer
    assert gpu.problems() == []  # so the queued copy had run before its buffer was freed


@pytest.mark.device
def test_plan_tensorrt_cannot_deserialise_is_refused_with_its_words(monkeypatch, tmp_path, gpu):
    _, plan = _stand_in_plan(monkeypatch, tmp_path, gpu, "8.6.1", deserialize_ok=False)
    with pytest.raises(EngineCompatibilityError, match=r"could not deserialise it \(TensorRT "
                                                       r"said: .*Magic tag does not match\)"):
        open_engine(plan).activate()
    assert gpu.problems() == []


@pytest.mark.device
def test_a_missing_gpu_is_an_error_not_a_leak(monkeypatch, tmp_path, gpu):
    _, plan = _stand_in_plan(monkeypatch, tmp_path, gpu, "8.2.1")
    with pytest.raises(EngineError, match="CUDA device 3"):
        open_engine(plan, device=3).activate()
    assert gpu.problems() == []


# ---------------------------------------------------------------------------------------------
# On a GPU with TensorRT and pycuda


def _require_gpu_stack():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
    from cvnet.engines.gpu import gpu_info

    try:
        gpu_info(0)
    except EngineError as err:
        pytest.skip("no CUDA GPU: {}".format(err))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """FP32 and FP16 plans of the tiny graph, built with the installed TensorRT."""
    _require_gpu_stack()
    from cvnet.engines.build_policy import BuildOptions
    from cvnet.engines.builder import build_engine

    folder = tmp_path_factory.mktemp("plans")
    plans = {}
    for precision in ("fp32", "fp16"):
        plans[precision] = build_engine(
            TINY_ONNX, str(folder / "tiny_{}.plan".format(precision)),
            options=BuildOptions(fp16=precision == "fp16", batch=(1, 4, 8), workspace_mib=256,
                                 verify_images=4))
    return plans


@pytest.fixture(scope="module")
def images():
    return [decode_image(path) for path in tiny_image_paths()]


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("precision, min_cosine", [("fp32", 0.9999), ("fp16", 0.999)])
def test_engine_embeddings_match_pytorch(built, images, precision, min_cosine):
    result = built[precision]
    with open_engine(result.plan_path) as runner:
        embeddings = runner.embed(images)
        spec = runner.spec
    assert (spec.batch_min, spec.batch_max) == (1, 8)
    assert row_cosine(embeddings, load_expected()["embeddings"]).min() >= min_cosine
    assert result.info.parity["passed"] is True


@pytest.mark.trt
@pytest.mark.gpu
def test_sidecar_records_the_build(built):
    from cvnet.engines.metadata import engine_info

    info = engine_info(read_sidecar(built["fp16"].plan_path))
    assert info.precision in ("fp16", "fp32")  # fp32 where the GPU/TensorRT gives no FP16
    assert (info.batch_min, info.batch_opt, info.batch_max) == (1, 4, 8)
    assert info.onnx_sha256 == read_sidecar(TINY_ONNX).onnx_sha256


@pytest.mark.trt
@pytest.mark.gpu
def test_batches_split_and_calls_from_another_thread(built, images):
    with open_engine(built["fp32"].plan_path, batch_range=(1, 3)) as runner:
        result = {}
        worker = threading.Thread(target=lambda: result.update(out=runner.embed(images * 2)))
        worker.start()
        worker.join()
    assert result["out"].shape == (14, 96)
    assert row_cosine(result["out"][:7], load_expected()["embeddings"]).min() >= 0.9999


@pytest.mark.trt
@pytest.mark.gpu
def test_plan_recorded_for_another_tensorrt_is_refused_naming_both(built, tmp_path):
    plan = str(tmp_path / "old.plan")
    shutil.copy(built["fp32"].plan_path, plan)
    with open(built["fp32"].sidecar_path) as handle:
        data = json.load(handle)
    data["engine"]["tensorrt_version"] = "7.1.3"
    with open(plan + ".json", "w") as handle:
        json.dump(data, handle)
    with pytest.raises(EngineCompatibilityError, match=r"TensorRT 7\.1\.3.*rebuild with "
                       "cvnet-build"):
        open_engine(plan).activate()


@pytest.mark.trt
@pytest.mark.gpu
def test_corrupt_plan_without_sidecar_is_refused_when_tensorrt_returns_none(tmp_path):
    _require_gpu_stack()
    plan = str(tmp_path / "corrupt.plan")
    with open(plan, "wb") as handle:
        handle.write(np.random.RandomState(0).bytes(4096))
    with pytest.raises(EngineCompatibilityError, match="could not deserialise it"):
        open_engine(plan).activate()
