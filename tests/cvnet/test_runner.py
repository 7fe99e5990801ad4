"""The PyTorch runner and the host-side checks of the ONNX Runtime runner (needs torch)."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from cvnet.core.preprocess import decode_image  # noqa: E402
from cvnet.engines import open_engine  # noqa: E402
from cvnet.models.checkpoint import save_checkpoint  # noqa: E402
from cvnet.models.runner import TorchRunner  # noqa: E402
from tests.fixtures import (TINY_ONNX, TINY_SIZE, load_expected, row_cosine,  # noqa: E402
                            tiny_image_paths)
from tests.fixtures.make_tiny_onnx import export_graph, fixture_model  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return [decode_image(path) for path in tiny_image_paths()]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    save_checkpoint(path, fixture_model(), arch="cvnet_tiny", model_kwargs={"num_classes": 0})
    return path


def test_pt_runner_reproduces_the_stored_pytorch_embeddings(checkpoint, images):
    with open_engine(checkpoint, input_size=TINY_SIZE) as runner:
        assert isinstance(runner, TorchRunner)
        assert runner.spec.source == "model input" and runner.spec.embedding_dim == 96
        out = runner.embed(images)
    np.testing.assert_allclose(out, load_expected()["embeddings"], rtol=0, atol=1e-5)


def test_onnx_runtime_and_pytorch_agree_through_the_same_interface(checkpoint, images):
    with open_engine(checkpoint, input_size=TINY_SIZE, batch_range=(1, 3)) as reference, \
            open_engine(TINY_ONNX) as ort_runner:
        expected, actual = reference.embed(images), ort_runner.embed(images)
    assert row_cosine(expected, actual).min() >= 0.9999


def test_static_batch_onnx_without_metadata_is_padded(tmp_path, images, caplog):
    """A graph with a fixed batch of 4 and no metadata at all: its input shape is used (with a
    warning) and 7 images run as 4 + 3 padded to 4."""
    path = str(tmp_path / "static.onnx")
    export_graph(fixture_model(), path, {}, batch=4)
    with open_engine(path) as runner:
        assert runner.spec.source == "model input"
        assert (runner.spec.batch_min, runner.spec.batch_max) == (4, 4)
        out = runner.embed(images)
    assert "has no sidecar" in caplog.text
    assert out.shape == (7, 96)
    assert row_cosine(out, load_expected()["embeddings"]).min() >= 0.9999


def test_pt_runner_is_lazy_about_torch(checkpoint):
    runner = open_engine(checkpoint)
    assert not runner.active and os.path.exists(runner.path)


def test_cuda_graphs_are_the_default_on_cuda_and_refused_on_the_cpu(checkpoint):
    from cvnet.engines.errors import EngineInputError

    assert open_engine(checkpoint, device="cuda").backend == "pytorch-graphs"  # not activated
    assert open_engine(checkpoint, device="cuda:1", cuda_graphs=False).backend == "pytorch"
    assert open_engine(checkpoint).backend == "pytorch"
    with pytest.raises(EngineInputError, match="cuda_graphs needs a CUDA device"):
        open_engine(checkpoint, cuda_graphs=True)


def test_pt_runner_runs_with_the_threads_asked_for(checkpoint, images):
    before = torch.get_num_threads()
    try:
        with open_engine(checkpoint, input_size=TINY_SIZE, threads=2) as runner:
            runner.embed(images[:1])
            assert torch.get_num_threads() == 2
        with open_engine(checkpoint, input_size=TINY_SIZE, threads=1) as runner:
            runner.embed(images[:1])
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_host_install_hands_its_abilities_to_device_code_as_plugins():
    """open_engine's .pt runner and cvnet-bench's model preparation are entry points."""
    from cvnet.core.plugins import BENCH, RUNNERS, load_plugin
    from cvnet.export.bench_models import prepare_model

    assert load_plugin(RUNNERS, "pt") is TorchRunner and load_plugin(RUNNERS, "pth") is TorchRunner
    assert load_plugin(BENCH, "prepare_model") is prepare_model
    assert load_plugin(RUNNERS, "tflite") is None


def test_pt_runner_takes_a_gpu_number_as_the_tensorrt_runner_does(checkpoint):
    assert TorchRunner(checkpoint, device=1)._device == "cuda:1"
    assert TorchRunner(checkpoint, device="1")._device == "cuda:1"
    assert TorchRunner(checkpoint, device="cuda")._device == "cuda:0"
    assert TorchRunner(checkpoint, device="cpu")._device == "cpu"


def test_cvnet_embed_device_runs_a_pt_engine_there_and_is_refused_for_others(
        checkpoint, tmp_path, caplog):
    import shutil

    from cvnet.jetson.cli import main
    from tests.fixtures import TINY_IMAGES

    images = str(tmp_path / "images")
    shutil.copytree(TINY_IMAGES, images)
    out = str(tmp_path / "out")
    assert main(["embed", "--engine", checkpoint, "--images", images, "-o", out,
                 "--device", "cpu"]) == 0
    assert main(["embed", "--engine", TINY_ONNX, "--images", images, "-o",
                 str(tmp_path / "out2"), "--device", "cpu"]) == 1
    assert "--device cpu applies to a .pt engine" in caplog.text
