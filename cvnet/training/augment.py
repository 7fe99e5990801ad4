"""Training augmentation on top of the shared preprocessing path (numpy, per-sample RNG).

The order mirrors the paper's recipe: the shared resize (:func:`cvnet.core.preprocess.resize_rgb`),
horizontal flip, 10-pixel zero pad + random crop back to size, the shared normalisation
(:func:`cvnet.core.preprocess.normalize`), then random erasing. Without augmentation a sample is
exactly what :func:`cvnet.core.preprocess.preprocess_batch` gives at evaluation.
"""

import math
from typing import Tuple

import cv2
import numpy as np

from cvnet.core.preprocess import PreprocessConfig, normalize, resize_rgb


def random_erase(image: np.ndarray, rng: np.random.Generator, *,
                 area: Tuple[float, float] = (0.02, 0.4), min_aspect: float = 0.3,
                 attempts: int = 100) -> np.ndarray:
    """Random erasing (Zhong et al. 2020) in place on a normalised (3, H, W) float image.

    The erased rectangle is set to 0, the dataset mean colour after normalisation.

    Args:
        image: (3, H, W) float32, normalised.
        rng: Random generator.
        area: Range of the erased fraction of the image area.
        min_aspect: Aspect ratios are drawn log-uniformly from [min_aspect, 1 / min_aspect].
        attempts: Tries to fit a rectangle before giving up (the image is then unchanged).

    Returns:
        ``image``, for chaining.
    """
    _, height, width = image.shape
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        aspect = math.exp(rng.uniform(math.log(min_aspect), -math.log(min_aspect)))
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if 0 < h < height and 0 < w < width:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            image[:, y:y + h, x:x + w] = 0.0
            break
    return image


class TrainTransform:
    """Decoded BGR image of any size -> augmented (3, H, W) float32 training sample.

    Args:
        config: Input size and normalisation (the same as evaluation's).
        flip_prob: Probability of a horizontal flip [paper: 0.5].
        pad: Zero padding before the random crop, in pixels [paper: 10].
        erase_prob: Probability of random erasing [paper: 0.5].
    """

    def __init__(self, config: PreprocessConfig = PreprocessConfig(), *, flip_prob: float = 0.5,
                 pad: int = 10, erase_prob: float = 0.5):
        self.config = config
        self.flip_prob, self.pad, self.erase_prob = flip_prob, pad, erase_prob

    def __call__(self, image_bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = self.config.height, self.config.width
        rgb = resize_rgb(image_bgr, (height, width))
        if rng.random() < self.flip_prob:
            rgb = rgb[:, ::-1]
        if self.pad:
            padded = cv2.copyMakeBorder(np.ascontiguousarray(rgb), self.pad, self.pad, self.pad,
                                        self.pad, cv2.BORDER_CONSTANT, value=0)
            y, x = (int(v) for v in rng.integers(0, 2 * self.pad + 1, size=2))
            rgb = padded[y:y + height, x:x + width]
        sample = normalize(rgb[None], self.config.mean, self.config.std)[0]
        if rng.random() < self.erase_prob:
            random_erase(sample, rng)
        return sample
