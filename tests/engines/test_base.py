"""Backend-independent runner logic: batch splitting, input specs, image validation."""

import numpy as np
import pytest

from cvnet.core.artifact import read_sidecar
from cvnet.core.errors import MetadataError
from cvnet.core.preprocess import resize_rgb
from cvnet.engines.base import batch_chunks
from cvnet.engines.errors import EngineInputError, EngineLoadError
from cvnet.engines.spec import (InputSpec, ModelIO, check_spec, fit_batch_range, prepare_images,
                                spec_from_metadata, spec_from_model, validate_images)
from tests.fixtures import TINY_ONNX

pytestmark = pytest.mark.device

MODEL_IO = ModelIO("images", (None, 3, 64, 64), "float32", "embeddings", (None, 96))


@pytest.mark.parametrize("count, low, high, expected", [
    (7, 1, 8, [(0, 7, 7)]),
    (7, 1, 3, [(0, 3, 3), (3, 6, 3), (6, 7, 1)]),
    (7, 4, 4, [(0, 4, 4), (4, 7, 4)]),  # static batch: the last one is padded to 4
    (1, 2, 8, [(0, 1, 2)]),  # profile minimum 2: padded
    (8, 1, 8, [(0, 8, 8)]),
])
def test_batch_chunks(count, low, high, expected):
    assert batch_chunks(count, low, high) == expected


def test_batch_chunks_rejects_a_bad_range():
    with pytest.raises(EngineInputError, match="1 <= min <= max"):
        batch_chunks(3, 4, 2)


def test_spec_from_sidecar_matches_the_model():
    spec = spec_from_metadata(read_sidecar(TINY_ONNX))
    assert spec.batch_shape(5) == (5, 3, 64, 64) and spec.embedding_dim == 96
    assert spec.preprocess.height == 64 and spec.source == "sidecar"
    check_spec(spec, MODEL_IO, TINY_ONNX)


def test_sidecar_of_another_model_is_refused_listing_every_difference():
    spec = spec_from_metadata(read_sidecar(TINY_ONNX))
    other = ModelIO("input", (None, 3, 128, 128), "float32", "embeddings", (None, 1024))
    with pytest.raises(MetadataError) as caught:
        check_spec(spec, other, "model.onnx")
    message = str(caught.value)
    assert "input name 'images' vs the model's 'input'" in message
    assert "(N, 3, 64, 64)" in message and "embedding_dim 96 vs the model's 1024" in message


def test_spec_from_model_input_nchw_and_nhwc():
    spec = spec_from_model(MODEL_IO, "m.onnx")
    assert (spec.layout, spec.height, spec.width, spec.embedding_dim) == ("NCHW", 64, 64, 96)
    assert spec.preprocess is not None and spec.source == "model input"
    nhwc = spec_from_model(ModelIO("x", ("batch", 32, 48, 3), "uint8", "y", ("batch", 16)), "m")
    assert (nhwc.layout, nhwc.height, nhwc.width, nhwc.preprocess) == ("NHWC", 32, 48, None)


def test_spec_from_model_without_a_fixed_size_asks_for_the_sidecar():
    with pytest.raises(EngineLoadError, match="copy its sidecar"):
        spec_from_model(ModelIO("x", (None, 3, None, None), "float32", "y", (None, 8)), "m.onnx")


def test_batch_range_comes_from_the_model_when_it_fixes_one():
    spec = spec_from_model(MODEL_IO, "m")
    assert fit_batch_range(spec, (4, 4), None)[6:8] == (4, 4)
    assert fit_batch_range(spec, (1, 16), (2, 8))[6:8] == (2, 8)
    assert fit_batch_range(spec, None, (3, 5))[6:8] == (3, 5)
    with pytest.raises(EngineInputError, match="outside what the model runs"):
        fit_batch_range(spec, (1, 8), (1, 32))


@pytest.mark.parametrize("image, what", [
    (np.zeros((8, 8), np.uint8), r"shape \(8, 8\)"),
    (np.zeros((8, 8, 4), np.uint8), r"shape \(8, 8, 4\)"),
    (np.zeros((8, 8, 3), np.float32), "dtype float32"),
    (np.zeros((0, 8, 3), np.uint8), r"shape \(0, 8, 3\)"),
    ("image.jpg", "a str"),
])
def test_bad_images_are_named_with_what_was_expected(image, what):
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(EngineInputError, match=r"image 1: expected an \(H, W, 3\) uint8 BGR array, "
                       r"got .*" + what):
        validate_images([good, image])


def test_no_images_is_an_error():
    with pytest.raises(EngineInputError, match="no images"):
        validate_images([])


def test_in_graph_preprocessing_gets_resized_rgb_pixels():
    spec = InputSpec("x", "NHWC", "uint8", 16, 24, None, 1, 8, "y", 8, False, "sidecar")
    image = np.random.RandomState(0).randint(0, 256, (30, 20, 3)).astype(np.uint8)
    batch = prepare_images([image, image], spec)
    assert batch.shape == (2, 16, 24, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], resize_rgb(image, (16, 24)))
    as_float = prepare_images([image], spec._replace(dtype="float32"))
    assert as_float.dtype == np.float32 and as_float.max() > 1  # pixel values, not normalised
