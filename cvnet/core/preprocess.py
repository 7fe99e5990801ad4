"""The one preprocessing path every backend shares (torch-free, Python 3.6).

decode (OpenCV, BGR) -> RGB -> resize to the model's size (bilinear) -> float32 / 255 ->
(x - mean) / std -> NCHW. PyTorch evaluation, ONNX Runtime, TensorRT and the benchmark's
end-to-end mode all call :func:`preprocess_batch`; training augmentation happens on top of it.
Comparisons between backends are meaningless unless they share this path.

Example:
    >>> image = decode_image("crop.jpg")             # (H, W, 3) uint8 BGR
    >>> batch = preprocess_batch([image])            # (1, 3, 256, 256) float32
"""

import os
from typing import List, NamedTuple, Sequence, Tuple, Union

import cv2
import numpy as np

from cvnet.core.errors import ConfigError, CVNetError
from cvnet.core.filenames import encode_name
from cvnet.core.image_header import SUFFIX_FORMATS

#: ImageNet statistics, RGB order, for images scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The paper's input size, (height, width) in pixels.
DEFAULT_SIZE = (256, 256)
#: File suffixes treated as images when walking folders (from
#: :data:`cvnet.core.image_header.SUFFIX_FORMATS`).
IMAGE_SUFFIXES = tuple(SUFFIX_FORMATS)


class ImageDecodeError(CVNetError):
    """An image file or buffer could not be decoded; the message names it and the reason."""


class PreprocessConfig(NamedTuple):
    """How images become model input; travels in the artefact sidecar.

    Attributes:
        height: Model input height in pixels.
        width: Model input width in pixels.
        mean: Per-channel mean, RGB order, for images scaled to [0, 1].
        std: Per-channel standard deviation, RGB order.
    """

    height: int = DEFAULT_SIZE[0]
    width: int = DEFAULT_SIZE[1]
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD


def _to_bgr_uint8(image: np.ndarray, source: str) -> np.ndarray:
    """Converts a decoded image of any common layout to (H, W, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # 16-bit PNG/TIFF: keep the top byte
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageDecodeError("{}: unsupported pixel type {}; convert it to 8-bit".format(
            source, image.dtype))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)  # alpha dropped
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ImageDecodeError("{}: unsupported image shape {}; expected gray, BGR or BGRA".format(
        source, image.shape))


def decode_image(source: Union[str, bytes]) -> np.ndarray:
    """Decodes an image file or encoded bytes to (H, W, 3) uint8 BGR.

    Grayscale is expanded to three channels, alpha is dropped and 16-bit images are scaled to
    8 bits, so every decodable image reaches the model the same way.

    Args:
        source: A file path, or the encoded bytes of a JPEG/PNG/... file.

    Raises:
        ImageDecodeError: Missing, empty, truncated or non-image input; the message names the
            file and the reason.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "<image bytes>", bytes(source)
    else:
        name = str(source)
        try:
            with open(name, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise ImageDecodeError("{}: cannot read file ({})".format(name, err.strerror))
    if not data:
        raise ImageDecodeError("{}: file is empty (0 bytes)".format(name))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageDecodeError("{}: not a decodable image (corrupt, truncated or not an image "
                               "format OpenCV reads)".format(name))
    return _to_bgr_uint8(image, name)


def resize_rgb(image_bgr: np.ndarray, size: Tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """BGR -> RGB and bilinear resize: (H, W, 3) uint8 BGR -> (height, width, 3) uint8 RGB.

    This is all a device does before a graph exported with preprocessing inside it.
    """
    height, width = size
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError("expected an (H, W, 3) uint8 BGR image, got shape {} dtype {}".format(
            image_bgr.shape, image_bgr.dtype))
    if image_bgr.shape[:2] != (height, width):
        image_bgr = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def normalize(images_rgb: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32, scaled to [0, 1] then standardised."""
    scale = np.asarray(std, np.float32) * 255.0
    out = (images_rgb.astype(np.float32) - np.asarray(mean, np.float32) * 255.0) / scale
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def preprocess_batch(images_bgr: Sequence[np.ndarray],
                     config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """The shared path: decoded BGR images of any size -> model input.

    Args:
        images_bgr: (H, W, 3) uint8 BGR images, e.g. from :func:`decode_image`.
        config: Input size and normalisation, normally read from the artefact sidecar.

    Returns:
        (N, 3, height, width) float32, RGB, normalised.
    """
    if len(images_bgr) == 0:
        raise ValueError("preprocess_batch got no images")
    size = (config.height, config.width)
    rgb = np.stack([resize_rgb(image, size) for image in images_bgr])
    return normalize(rgb, config.mean, config.std)


def l2_normalize(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scales each row of (N, D) embeddings to unit L2 norm (rows of zeros stay zero)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, eps)


def is_image_path(path: str) -> bool:
    """Whether a path has an image suffix (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def find_images(folder: str, option: str) -> List[str]:
    """Every image file under ``folder``, by suffix, walked recursively in sorted order.

    Args:
        folder: An existing folder.
        option: The command-line option that named it, for the error message.

    Returns:
        Paths relative to ``folder`` with ``/`` separators, as the operating system names them
        (``str`` that may hold surrogate escapes; see :mod:`cvnet.core.filenames`).

    Raises:
        ConfigError: There is no image in it: naming the folder, the suffixes read and what the
            folder holds instead.
    """
    found, others = [], []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            relative = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            (found if is_image_path(name) else others).append(relative)
    if not found:
        held = ("it holds {} other file(s), e.g. {}".format(len(others), ", ".join(
            encode_name(name) for name in others[:3])) if others else "it is empty")
        raise ConfigError("{} {}: no image file in this folder or below it ({}); cvnet reads "
                          "the suffixes {} (any case). Point {} at the folder of crops, or "
                          "convert the files".format(option, folder, held,
                                                     " ".join(IMAGE_SUFFIXES), option))
    return found
