"""Embedding parity: does a converted model compute the embeddings its reference computes?

One definition for every comparison cvnet makes: the exporter's ONNX Runtime vs PyTorch check
(:mod:`cvnet.export.verify`) and the engine builder's TensorRT vs ONNX Runtime check
(:func:`cvnet.engines.builder.measure_parity`). The same images (:func:`verification_images`) go
through both sides; the figures (:class:`ParityFigures`) are the per-image cosine similarity (min,
mean), the largest absolute difference, and retrieval agreement: the share of images whose top-1
and top-5 neighbours among the other images are the same in both. The thresholds on the smallest
cosine are defined here once, by precision (INT8 is reported, not judged).

Device-side: numpy and OpenCV, Python 3.6.
"""

from typing import List, NamedTuple, Optional

import cv2
import numpy as np

from cvnet.core.synth import sample_images

#: A float32 conversion fails when any image's embedding has a cosine below this to the reference.
FP32_MIN_COSINE = 0.9999
#: The same for FP16 (an FP16-typed graph, an FP16 engine).
FP16_MIN_COSINE = 0.999
#: Threshold by precision; a precision without one (INT8) is measured and reported, not judged.
MIN_COSINE = {"fp32": FP32_MIN_COSINE, "fp16": FP16_MIN_COSINE}


class ParityFigures(NamedTuple):
    """Agreement between reference and converted embeddings of the same images.

    Attributes:
        images: Number of embeddings compared.
        cosine_min: Smallest per-image cosine similarity.
        cosine_mean: Mean per-image cosine similarity.
        max_abs_diff: Largest absolute difference of any embedding component.
        top1_agreement: Share of images whose nearest other image is the same in both.
        top5_agreement: Share of images whose 5 nearest other images are the same set in both.
        batch: Batch size the converted model ran at, when one was fixed for the comparison.
    """

    images: int
    cosine_min: float
    cosine_mean: float
    max_abs_diff: float
    top1_agreement: float
    top5_agreement: float
    batch: Optional[int] = None


def verification_images(count: int, seed: int = 0) -> List[np.ndarray]:
    """The images parity is measured on: ``count`` BGR uint8 images.

    Half are synthetic vehicle crops in both views (:func:`cvnet.core.synth.sample_images`,
    128x128), so that the retrieval figures compare images a ReID model is meant for; the rest
    alternate uniform noise with structured images (a colour gradient with random rectangles,
    ellipses and lines), 48 to 320 pixels on each side with varied aspect ratios, so that
    resizing is exercised too.

    Args:
        count: Number of images.
        seed: Seed of the generators; the same seed gives the same images.

    Returns:
        ``count`` arrays of shape (H, W, 3), uint8, BGR.
    """
    vehicles = sample_images(count // 2, seed=seed, size=128)
    rng = np.random.RandomState(seed)
    return vehicles + [_generated_image(rng, noise=i % 2 == 0)
                       for i in range(count - len(vehicles))]


def _generated_image(rng: np.random.RandomState, *, noise: bool) -> np.ndarray:
    """One noise or drawn-shapes image of random size, (H, W, 3) uint8 BGR."""
    height, width = (int(v) for v in rng.randint(48, 321, size=2))
    if noise:
        return rng.randint(0, 256, size=(height, width, 3), dtype=np.uint8)
    start, stop = rng.randint(0, 256, size=3), rng.randint(0, 256, size=3)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    image = np.ascontiguousarray(np.broadcast_to(start + (stop - start) * ramp,
                                                 (height, width, 3)).astype(np.uint8))
    for _ in range(rng.randint(2, 7)):
        colour = tuple(int(c) for c in rng.randint(0, 256, size=3))
        x0, x1 = sorted(int(v) for v in rng.randint(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.randint(0, height, size=2))
        shape = rng.randint(3)
        if shape == 0:
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, -1)
        elif shape == 1:
            axes = (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2))
            cv2.ellipse(image, ((x0 + x1) // 2, (y0 + y1) // 2), axes, 0, 0, 360, colour, -1)
        else:
            cv2.line(image, (x0, y0), (x1, y1), colour, int(rng.randint(1, 6)))
    return image


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (N, D) arrays, (N,) float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return (a * b).sum(axis=1) / norms


def _neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows, nearest first."""
    unit = embeddings.astype(np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-30)
    similarity = unit.dot(unit.T)
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def retrieval_agreement(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """Share of queries whose ``k`` nearest neighbours are the same set in both embeddings.

    Each of the N embeddings is a query against the other N - 1 (leave-one-out gallery).

    Args:
        reference: (N, D) reference embeddings.
        candidate: (N, D) embeddings of the same images from the converted model.
        k: Neighbours compared; at most N - 1 are used.
    """
    count = reference.shape[0]
    k = min(k, count - 1)
    if k < 1:
        return 1.0
    ref, cand = _neighbours(reference, k), _neighbours(candidate, k)
    return float(np.mean([set(ref[i]) == set(cand[i]) for i in range(count)]))


def parity_figures(reference: np.ndarray, candidate: np.ndarray, *,
                   batch: Optional[int] = None) -> ParityFigures:
    """Compares (N, D) reference and candidate embeddings of the same images.

    Raises:
        ValueError: The two arrays differ in shape.
    """
    if reference.shape != candidate.shape:
        raise ValueError("embedding shapes differ: reference {}, candidate {}".format(
            reference.shape, candidate.shape))
    cosine = row_cosine(reference, candidate)
    return ParityFigures(
        images=int(reference.shape[0]), cosine_min=float(cosine.min()),
        cosine_mean=float(cosine.mean()),
        max_abs_diff=float(np.abs(reference.astype(np.float64) - candidate).max()),
        top1_agreement=retrieval_agreement(reference, candidate, 1),
        top5_agreement=retrieval_agreement(reference, candidate, 5), batch=batch)


def passed(figures: ParityFigures, precision: str) -> Optional[bool]:
    """Whether the figures reach the precision's threshold; None where none is set (INT8)."""
    threshold = MIN_COSINE.get(precision)
    return None if threshold is None else bool(figures.cosine_min >= threshold)
