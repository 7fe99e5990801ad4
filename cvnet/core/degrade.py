"""Image degradations of a sweep: smaller crops, motion blur, JPEG (torch-free, Python 3.6).

Each is a proxy for something a drone or a roadside box does to a crop:

- ``scale``: the crop is downscaled (area interpolation) so that its shorter side is ``level``
  pixels, the size a detector hands over from higher altitude; the embedder's normal
  preprocessing then resizes it to the model's input as it would any crop. A crop already
  smaller than ``level`` is left as it is.
- ``blur``: linear motion blur over ``level`` pixels (a line kernel, normalised), at an angle
  drawn per image from the seed and the file's name, so a sweep is repeatable and every image
  moves its own way.
- ``jpeg``: encoded and decoded by OpenCV at quality ``level`` (a compressed downlink).

Example:
    >>> transform = degradation("blur", 9, seed=0)
    >>> blurred = transform(image, "/data/a.jpg")        # (H, W, 3) uint8 BGR, same size
"""

import zlib
from typing import Callable, Dict, Tuple

import cv2
import numpy as np

from cvnet.core.errors import ConfigError

#: Degradation kinds, in the order a sweep runs them.
KINDS = ("scale", "blur", "jpeg")
#: Levels of each kind, mildest first: crop side (px), blur length (px), JPEG quality.
DEFAULT_LEVELS = {"scale": (256, 192, 128, 96, 64, 48, 32, 24, 16),
                  "blur": (3, 5, 9, 15, 21, 31),
                  "jpeg": (90, 70, 50, 30, 20, 10, 5)}  # type: Dict[str, Tuple[int, ...]]
#: What each kind's level measures, for tables.
UNITS = {"scale": "shorter side, px", "blur": "motion blur length, px", "jpeg": "JPEG quality"}

Transform = Callable[[np.ndarray, str], np.ndarray]


def downscale(image: np.ndarray, side: int) -> np.ndarray:
    """The crop with its shorter side reduced to ``side`` pixels (area interpolation), or the
    crop itself when it is not larger."""
    height, width = image.shape[:2]
    if min(height, width) <= side:
        return image
    scale = side / float(min(height, width))
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """A (length, length) float32 line kernel at ``angle`` degrees, summing to 1."""
    if length < 1:
        raise ConfigError("a motion blur length must be >= 1 pixel, got {}".format(length))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length), flags=cv2.INTER_LINEAR)
    total = kernel.sum()
    if total <= 0:  # a one-pixel kernel rotated away cannot happen, but stay safe
        return np.ones((1, 1), np.float32)
    return kernel / total


def motion_blur(image: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Linear motion blur over ``length`` pixels at ``angle`` degrees (borders reflected)."""
    if length <= 1:
        return image
    return cv2.filter2D(image, -1, motion_kernel(length, angle), borderType=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The crop after a JPEG round trip at ``quality`` (1-100), with OpenCV."""
    if not 1 <= quality <= 100:
        raise ConfigError("JPEG quality must be in 1..100, got {}".format(quality))
    ok, data = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ConfigError("OpenCV cannot encode JPEG here; reinstall opencv")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _angle(seed: int, path: str) -> float:
    """A repeatable angle in [0, 180) degrees for one image of one sweep."""
    key = zlib.crc32(path.encode("utf-8", "surrogateescape"), seed & 0xFFFFFFFF)
    return float(np.random.RandomState(key).uniform(0.0, 180.0))


def degradation(kind: str, level: int, seed: int = 0) -> Transform:
    """The transform ``(image, path) -> image`` of one sweep level.

    Raises:
        ConfigError: An unknown kind or a level out of range.
    """
    if kind == "scale":
        if level < 1:
            raise ConfigError("a crop side must be >= 1 pixel, got {}".format(level))
        return lambda image, path: downscale(image, level)
    if kind == "blur":
        motion_kernel(level, 0.0)  # checks the level now, not at the first image
        return lambda image, path: motion_blur(image, level, _angle(seed, path))
    if kind == "jpeg":
        if not 1 <= level <= 100:
            raise ConfigError("JPEG quality must be in 1..100, got {}".format(level))
        return lambda image, path: jpeg(image, level)
    raise ConfigError("unknown degradation {!r}; expected one of {}".format(kind, ", ".join(KINDS)))
