"""The shared preprocessing path: decoding odd images, resizing, normalising."""

import cv2
import numpy as np
import pytest

from cvnet.core.preprocess import (IMAGENET_MEAN, IMAGENET_STD, ImageDecodeError, PreprocessConfig,
                                   decode_image, is_image_path, l2_normalize, preprocess_batch,
                                   resize_rgb)

pytestmark = pytest.mark.device


def _encode(image, suffix=".png"):
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def test_decode_reads_path_and_bytes_as_bgr(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 2] = 200  # red in BGR
    path = tmp_path / "red.png"
    path.write_bytes(_encode(image))
    for source in (str(path), path.read_bytes()):
        decoded = decode_image(source)
        assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8
        assert np.array_equal(decoded, image)


@pytest.mark.parametrize("image, expected_pixel", [
    (np.full((8, 8), 77, np.uint8), (77, 77, 77)),                       # grayscale
    (np.dstack([np.full((8, 8), v, np.uint8) for v in (1, 2, 3, 9)]), (1, 2, 3)),  # BGRA
    (np.full((8, 8, 3), 0x3400, np.uint16), (0x34, 0x34, 0x34)),         # 16-bit
])
def test_decode_normalises_layouts_to_bgr_uint8(image, expected_pixel):
    decoded = decode_image(_encode(image))
    assert decoded.shape == (8, 8, 3) and decoded.dtype == np.uint8
    assert tuple(decoded[4, 4]) == expected_pixel


def test_decode_errors_name_the_file_and_reason(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(_encode(np.zeros((64, 64, 3), np.uint8), ".jpg")[:40])
    cases = [(tmp_path / "missing.jpg", "cannot read file"), (empty, "file is empty"),
             (text, "not a decodable image"), (truncated, "not a decodable image")]
    for path, reason in cases:
        with pytest.raises(ImageDecodeError, match=reason) as info:
            decode_image(str(path))
        assert str(path) in str(info.value)


def test_preprocess_batch_matches_the_documented_formula():
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (40, 60, 3)).astype(np.uint8),
              rng.randint(0, 256, (256, 256, 3)).astype(np.uint8)]
    batch = preprocess_batch(images)
    assert batch.shape == (2, 3, 256, 256) and batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"]
    # The 256x256 image is not resized: check it exactly against (x/255 - mean) / std in RGB.
    rgb = images[1][:, :, ::-1].astype(np.float32) / 255.0
    expected = ((rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)
    np.testing.assert_allclose(batch[1], expected, atol=1e-5)


def test_preprocess_uses_bilinear_resize_and_configured_size():
    image = np.random.RandomState(1).randint(0, 256, (50, 70, 3)).astype(np.uint8)
    config = PreprocessConfig(height=64, width=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    batch = preprocess_batch([image], config)
    assert batch.shape == (1, 3, 64, 32)
    expected = cv2.resize(image, (32, 64), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0
    np.testing.assert_allclose(batch[0].transpose(1, 2, 0), expected, atol=1e-6)
    assert resize_rgb(image, (64, 32)).shape == (64, 32, 3)


def test_preprocess_refuses_wrong_input():
    with pytest.raises(ValueError, match="no images"):
        preprocess_batch([])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 BGR"):
        preprocess_batch([np.zeros((8, 8), np.uint8)])


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_image_suffixes():
    assert is_image_path("a/B.JPG") and is_image_path("x.png") and not is_image_path("x.txt")
