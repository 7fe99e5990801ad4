"""What an encoded image file is, from its first bytes: format, size, channels, bit depth.

Read before decoding, so that a file whose name lies about its format, a truncated JPEG or PNG,
or an image too large to decode is reported as such instead of failing (or filling memory)
inside OpenCV. ``cvnet-embed`` checks every file with it (:func:`cvnet.jetson.embed.check_image`)
before :func:`cvnet.core.preprocess.decode_image`. Pure Python, Python 3.6.
"""

import collections
import struct
from typing import IO, NamedTuple, Optional, Tuple

#: The image file suffixes cvnet reads (walking a folder takes these), and the format each promises.
SUFFIX_FORMATS = collections.OrderedDict([
    (".jpg", "jpeg"), (".jpeg", "jpeg"), (".png", "png"), (".bmp", "bmp"), (".tif", "tiff"),
    (".tiff", "tiff"), (".webp", "webp"), (".ppm", "pnm"), (".pgm", "pnm")])


class Header(NamedTuple):
    """What a file's first bytes say: format, and for PNG/JPEG size, channels and bit depth."""

    format: str
    width: Optional[int] = None
    height: Optional[int] = None
    channels: Optional[int] = None
    bits: Optional[int] = None
    complete: bool = True


#: Bytes :func:`read_file_header` reads first: a PNG states its size in its first 26, a JPEG in
#: its frame header, which follows the EXIF and other application blocks (almost always within
#: 64 KiB; a later one costs further reads, doubling).
HEADER_BYTES = 64 * 1024

_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header(data: bytes) -> Header:
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            position += 1
            continue
        marker = data[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            position += 2 if marker != 0xFF else 1
            continue
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if marker in _JPEG_SOF and position + 10 <= end:
            bits, height, width, channels = struct.unpack(">BHHB", data[position + 4:position + 10])
            return Header("jpeg", width, height, channels, bits,
                          data.rstrip(b"\x00").endswith(b"\xff\xd9"))
        position += 2 + length
    return Header("jpeg", complete=False)


def read_header(data: bytes) -> Optional[Header]:
    """Identifies an encoded image from its bytes (None: no image format cvnet knows)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height, bits, color = struct.unpack(">IIBB", data[16:26])
        return Header("png", width, height, _PNG_CHANNELS.get(color), bits,
                      b"IEND" in data[-16:])
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_header(data)
    if data[:2] == b"BM":
        return Header("bmp")
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return Header("tiff")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Header("webp")
    if data[:2] in (b"P2", b"P3", b"P5", b"P6"):
        return Header("pnm")
    return None


def read_file_header(handle: IO[bytes]) -> Tuple[bytes, Optional[Header]]:
    """Reads the first bytes of an open image file, as many as it takes to learn its size.

    So that an image too large to decode is refused without reading the rest of it: the pixel
    data of a PNG or JPEG comes after the header that states its size. Reads
    :data:`HEADER_BYTES`, and for a JPEG whose frame header lies further, more (doubling) until
    it is found or the file ends.

    Args:
        handle: The file, opened in binary mode at its start.

    Returns:
        (the bytes read, :func:`read_header` of them). The header's ``complete`` says nothing
        yet: read the rest and call :func:`read_header` on the whole file for it.
    """
    data = handle.read(HEADER_BYTES)
    header = read_header(data)
    while header is not None and header.format == "jpeg" and header.width is None:
        more = handle.read(len(data))
        if not more:
            break
        data += more
        header = read_header(data)
    return data, header
