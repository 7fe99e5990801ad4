"""The tiny fixture's decoded images and PyTorch's embeddings of them, shared by the runner
tests (ONNX Runtime, OpenVINO)."""

import pytest

from cvnet.core.preprocess import decode_image
from tests.fixtures import load_expected, tiny_image_paths


@pytest.fixture(scope="module")
def images():
    """The fixture's images, decoded: (H, W, 3) uint8 BGR."""
    return [decode_image(path) for path in tiny_image_paths()]


@pytest.fixture(scope="module")
def expected():
    """``embeddings``, ``preprocessed`` and ``names`` from tests/fixtures/tiny/expected.npz."""
    return load_expected()
