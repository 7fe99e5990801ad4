"""cvnet-embed's file check reads an image's header before the rest: an image too large to decode
is refused without reading it all, and a header far into a JPEG is still found."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from cvnet.core.image_header import HEADER_BYTES, read_file_header
from cvnet.jetson import embed
from cvnet.jetson.embed import check_image

pytestmark = pytest.mark.device


def _png_header(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF))


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    total = 0

    def read(self, size=-1):
        data = super().read(size)
        CountingFile.total += len(data)
        return data


def test_an_oversized_image_is_refused_from_its_header_alone(tmp_path, monkeypatch):
    path = tmp_path / "panorama.png"
    path.write_bytes(_png_header(40000, 40000) + b"\0" * (16 << 20))  # 16 MiB of "pixel data"
    CountingFile.total = 0
    monkeypatch.setattr(embed, "open", lambda name, mode: CountingFile(name, "r"), raising=False)
    checked = check_image(str(path), max_pixels=10000 * 10000)
    assert checked.kinds == ("too_large",) and "40000x40000" in checked.message
    assert CountingFile.total <= HEADER_BYTES  # not the 16 MiB behind the header


def _jpeg_with_a_long_preamble(image, preamble):
    """A JPEG whose frame header (SOF) comes after ``preamble`` bytes of APP segments."""
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    data = data.tobytes()
    segments = b""
    while len(segments) < preamble:
        body = b"cvnet" + b"\0" * 60000
        segments += b"\xff\xe9" + struct.pack(">H", len(body) + 2) + body
    return data[:2] + segments + data[2:]


def test_a_jpeg_frame_header_far_into_the_file_is_found(tmp_path):
    image = np.full((40, 24, 3), 120, np.uint8)
    data = _jpeg_with_a_long_preamble(image, 3 * HEADER_BYTES)
    with io.BytesIO(data) as handle:
        head, header = read_file_header(handle)
    assert (header.format, header.width, header.height) == ("jpeg", 24, 40)
    assert len(head) > HEADER_BYTES  # it read on past the first block to find it
    path = tmp_path / "exif_heavy.jpg"
    path.write_bytes(data)
    checked = check_image(str(path), max_pixels=24 * 40)
    assert checked.image is not None and checked.image.shape == (40, 24, 3), checked.message
    assert check_image(str(path), max_pixels=24 * 40 - 1).kinds == ("too_large",)
