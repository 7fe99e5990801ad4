"""An encoded image's header: format, size, channels and depth, before anything is decoded."""

import cv2
import numpy as np
import pytest

from cvnet.core.image_header import SUFFIX_FORMATS, read_header

pytestmark = pytest.mark.device


def _encoded(suffix, image):
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def test_png_and_jpeg_headers_give_size_channels_and_depth():
    png = read_header(_encoded(".png", np.zeros((12, 34, 4), np.uint8)))
    assert png == ("png", 34, 12, 4, 8, True)
    gray16 = read_header(_encoded(".png", np.zeros((5, 6), np.uint16)))
    assert (gray16.channels, gray16.bits) == (1, 16)
    jpeg = read_header(_encoded(".jpg", np.zeros((20, 30, 3), np.uint8)))
    assert jpeg == ("jpeg", 30, 20, 3, 8, True)


def test_a_truncated_file_is_incomplete_and_unknown_bytes_are_no_image():
    data = _encoded(".jpg", np.full((20, 30, 3), 128, np.uint8))
    assert read_header(data[:len(data) // 2]).complete is False
    assert read_header(data[:4]) == ("jpeg", None, None, None, None, False)
    assert read_header(b"GIF89a not a format cvnet reads") is None
    assert read_header(_encoded(".bmp", np.zeros((2, 2, 3), np.uint8))).format == "bmp"


def test_every_image_suffix_promises_a_format_the_header_reader_knows():
    known = {"png", "jpeg", "bmp", "tiff", "webp", "pnm"}
    assert set(SUFFIX_FORMATS.values()) <= known
