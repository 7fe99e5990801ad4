"""The ONNX Runtime runner, for real, on the committed tiny cvnet graph (both CI jobs).

The expected embeddings were computed by PyTorch on the host (tests/fixtures/make_tiny_onnx.py);
a host test checks they are still what PyTorch gives.
"""

import logging
import os
import shutil

import numpy as np
import pytest

from cvnet.core.errors import ConfigError, MetadataError
from cvnet.core.parity import FP32_MIN_COSINE
from cvnet.core.preprocess import PreprocessConfig, preprocess_batch
from cvnet.engines import open_engine
from cvnet.engines.errors import EngineError, EngineInputError, EngineLoadError
from cvnet.engines.ort_runner import SPIN_WAIT_KEY, OrtRunner, default_providers
from tests.fixtures import TINY_ONNX, TINY_SIZE, copy_sidecar, row_cosine

pytestmark = pytest.mark.device


@pytest.fixture
def copy_of_onnx(tmp_path):
    """The tiny graph copied to a temporary folder, without its sidecar."""
    path = str(tmp_path / "model.onnx")
    shutil.copy(TINY_ONNX, path)
    return path


def test_preprocessing_here_equals_the_hosts(images, expected):
    batch = preprocess_batch(images, PreprocessConfig(*TINY_SIZE))
    np.testing.assert_allclose(batch, expected["preprocessed"], rtol=0, atol=1e-6)


def test_embeddings_match_pytorch(images, expected):
    with open_engine(TINY_ONNX) as runner:
        assert isinstance(runner, OrtRunner)
        embeddings = runner.embed(images)
        assert runner.last_inference_time > 0
    assert embeddings.shape == (7, 96) and embeddings.dtype == np.float32
    assert row_cosine(embeddings, expected["embeddings"]).min() >= FP32_MIN_COSINE


@pytest.mark.parametrize("spin_wait, expected_entry", [(False, "0"), (True, "1")])
def test_intra_op_threads_wait_without_spinning_unless_asked(images, spin_wait, expected_entry):
    """Spinning threads cost a shared CPU (docs/threads.md): off unless asked for."""
    with OrtRunner(TINY_ONNX, threads=2, spin_wait=spin_wait) as runner:
        runner.embed(images[:2])
        options = runner._session.get_session_options()
        assert options.get_session_config_entry(SPIN_WAIT_KEY) == expected_entry
        assert options.intra_op_num_threads == 2


def test_preprocessed_batch_gives_the_same_embeddings(images, expected):
    with open_engine(TINY_ONNX) as runner:
        from_batch = runner.embed(expected["preprocessed"])
        from_images = runner.embed(images)
    np.testing.assert_allclose(from_batch, from_images, rtol=0, atol=1e-5)


def test_sidecar_is_read():
    with open_engine(TINY_ONNX) as runner:
        spec = runner.spec
        assert runner.metadata.variant == "cvnet_tiny"
        assert runner.providers[-1] == "CPUExecutionProvider"
    assert spec.source == "sidecar"
    assert (spec.input_name, spec.height, spec.width, spec.embedding_dim) == ("images", 64, 64, 96)
    assert (spec.batch_min, spec.batch_max) == (1, 8)  # the sidecar's dynamic range


def test_long_input_is_split_into_batches_with_the_same_result(images, expected):
    many = images * 3  # 21 images, batches of at most 8
    with open_engine(TINY_ONNX) as runner:
        out = runner.embed(many)
    assert out.shape == (21, 96)
    assert row_cosine(out, np.concatenate([expected["embeddings"]] * 3)).min() >= FP32_MIN_COSINE


def test_static_batch_pads_the_last_batch_and_drops_the_padding(images, expected):
    with open_engine(TINY_ONNX, batch_range=(4, 4)) as runner:
        out = runner.embed(images)  # 7 images: batches of 4 and 3 + 1 padding row
    assert out.shape == (7, 96)
    assert row_cosine(out, expected["embeddings"]).min() >= FP32_MIN_COSINE


def test_l2_normalisation_on_request(images):
    with open_engine(TINY_ONNX, normalize=True) as runner:
        normalised = runner.embed(images)
        raw = runner.embed(images, normalize=False)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, rtol=0, atol=1e-5)
    assert np.abs(np.linalg.norm(raw, axis=1) - 1.0).max() > 1e-3


def test_without_sidecar_the_metadata_in_the_file_is_used(copy_of_onnx, images, expected):
    with open_engine(copy_of_onnx) as runner:
        assert runner.spec.source == "metadata_props"
        assert runner.metadata.variant == "cvnet_tiny"
        out = runner.embed(images)
    assert row_cosine(out, expected["embeddings"]).min() >= FP32_MIN_COSINE


def test_without_any_metadata_the_input_shape_is_used_with_a_warning(copy_of_onnx, images,
                                                                     expected, monkeypatch,
                                                                     caplog):
    # The file's metadata_props is the second source; switch it off to reach the third.
    monkeypatch.setattr(OrtRunner, "_embedded_metadata", lambda self: None)
    with caplog.at_level(logging.WARNING), open_engine(copy_of_onnx) as runner:
        assert runner.spec.source == "model input"
        assert (runner.spec.height, runner.spec.width) == (64, 64)
        out = runner.embed(images)
    assert "has no sidecar" in caplog.text and "ImageNet mean/std" in caplog.text
    assert row_cosine(out, expected["embeddings"]).min() >= FP32_MIN_COSINE


def test_sidecar_of_another_export_is_refused(copy_of_onnx):
    copy_sidecar(copy_of_onnx, onnx_sha256="0" * 64)
    with pytest.raises(MetadataError, match="different exports"):
        open_engine(copy_of_onnx).activate()


def test_sidecar_describing_another_input_is_refused(copy_of_onnx):
    copy_sidecar(copy_of_onnx, input_height=128, input_width=128)
    runner = open_engine(copy_of_onnx, check_hash=False)
    with pytest.raises(MetadataError, match=r"does not match its sidecar.*\(N, 3, 128, 128\)"):
        runner.activate()
    assert not runner.active


def test_missing_file():
    with pytest.raises(EngineLoadError, match="no such file"):
        open_engine("/nonexistent/cvnet.onnx")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(EngineLoadError, match="empty"):
        open_engine(str(path))


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_truncated_or_corrupt_onnx_is_refused(copy_of_onnx, damage):
    with open(copy_of_onnx, "rb") as handle:
        data = handle.read()
    data = data[:len(data) // 3] if damage == "truncated" else os.urandom(4096)
    with open(copy_of_onnx, "wb") as handle:
        handle.write(data)
    with pytest.raises(EngineLoadError, match="ONNX Runtime cannot load it"):
        open_engine(copy_of_onnx).activate()


def test_truncated_onnx_with_its_sidecar_is_caught_by_the_hash(copy_of_onnx):
    copy_sidecar(copy_of_onnx)
    with open(copy_of_onnx, "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(MetadataError, match="does not match its sidecar"):
        open_engine(copy_of_onnx).activate()


@pytest.mark.parametrize("bad, expected_text", [
    (np.zeros((64, 64, 3), np.uint8), "wrap a single image in a list"),
    (np.zeros((2, 3, 64, 64), np.float64), r"shape \(N, 3, 64, 64\) float32"),
    (np.zeros((2, 3, 32, 32), np.float32), r"got an array of shape \(2, 3, 32, 32\)"),
    ([np.zeros((64, 64), np.uint8)], r"image 0: expected an \(H, W, 3\) uint8 BGR array"),
    ([np.zeros((64, 64, 3), np.float32)], "dtype float32"),
    (["a.jpg"], "got a str"),
])
def test_bad_input_names_what_was_expected(bad, expected_text):
    with open_engine(TINY_ONNX) as runner:
        with pytest.raises(EngineInputError, match=expected_text):
            runner.embed(bad)


def test_runner_must_be_active():
    runner = open_engine(TINY_ONNX)
    with pytest.raises(EngineError, match="not active"):
        runner.embed([np.zeros((8, 8, 3), np.uint8)])
    with runner:
        with pytest.raises(EngineError, match="already active"):
            runner.activate()
    assert not runner.active
    runner.deactivate()  # twice is fine


def test_providers_default_and_unknown():
    assert default_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(EngineError, match="not in this onnxruntime"):
        open_engine(TINY_ONNX, providers=["NoSuchExecutionProvider"]).activate()


def test_unknown_suffix():
    with pytest.raises(ConfigError, match=r"expected one of .*\.onnx.*\.plan"):
        open_engine("model.tflite")
