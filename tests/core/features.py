"""A non-learned embedder for tests that need a real identity signal without trained weights.

The repository ships no trained model (the tiny fixture's weights are random, and its
retrieval is at chance), so tests of what accuracy does (a degradation sweep, the synthetic
set's cross-view signal) embed with colour: the hue-saturation histogram of the crop's centre,
square-rooted (a Hellinger embedding, compared by cosine like any other).
"""

from typing import List

import cv2
import numpy as np

#: Side the crop is resized to first (the embedder's "input size").
SIDE = 64


def colour_histogram(image: np.ndarray, bins=(12, 4)) -> np.ndarray:
    """(12 * 4,) float32 square-rooted hue-saturation histogram of the centre of a BGR crop."""
    image = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    centre = hsv[SIDE // 4:3 * SIDE // 4, SIDE // 4:3 * SIDE // 4]
    hist = cv2.calcHist([centre], [0, 1], None, list(bins), [0, 180, 0, 256]).ravel()
    return np.sqrt(hist / hist.sum()).astype(np.float32)


def colour_embedder(images: List[np.ndarray]) -> np.ndarray:
    """An :data:`cvnet.core.evaluation.Embedder`: (N, 48) float32 colour histograms."""
    return np.stack([colour_histogram(image) for image in images])
