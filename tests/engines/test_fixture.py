"""The committed tiny fixture is small and still what PyTorch computes (so it cannot rot)."""

import os

import numpy as np
import pytest

from tests.fixtures import TINY_DIR, load_expected, tiny_image_paths


@pytest.mark.device
def test_fixture_is_small_and_complete():
    sizes = [os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(TINY_DIR) for name in names]
    assert sum(sizes) < 1 << 20
    expected = load_expected()
    assert expected["embeddings"].shape == (len(tiny_image_paths()), 96)
    assert list(expected["names"]) == [os.path.basename(p) for p in tiny_image_paths()]


def test_stored_embeddings_are_what_pytorch_gives_today():
    pytest.importorskip("torch")
    from tests.fixtures.make_tiny_onnx import expected_embeddings, fixture_model

    np.testing.assert_allclose(expected_embeddings(fixture_model(), tiny_image_paths()),
                               load_expected()["embeddings"], rtol=0, atol=1e-5)


def test_stored_images_are_what_the_generator_writes(tmp_path):
    pytest.importorskip("torch")
    import cv2

    from tests.fixtures.make_tiny_onnx import fixture_images

    for path, image in zip(tiny_image_paths(), fixture_images()):
        np.testing.assert_array_equal(cv2.imread(path, cv2.IMREAD_UNCHANGED), image)

