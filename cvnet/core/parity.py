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

from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import cv2
import numpy as np

from cvnet.core.synth import sample_images

#: A float32 conversion fails when any image's embedding has a cosine below this to the reference.
FP32_MIN_COSINE = 0.9999
#: The same for FP16 (an FP16-typed graph, an FP16 engine).
FP16_MIN_COSINE = 0.999
#: The same for BF16 inference (OpenVINO's INFERENCE_PRECISION_HINT bf16): 8 significant bits
#: round every activation about 16 times more coarsely than FP16, so the cosine bar is lower and
#: the rankings are judged too (:data:`MIN_TOP5_AGREEMENT`).
BF16_MIN_COSINE = 0.995
#: Threshold by precision; a precision without one (INT8) is measured and reported, not judged.
MIN_COSINE = {"fp32": FP32_MIN_COSINE, "fp16": FP16_MIN_COSINE, "bf16": BF16_MIN_COSINE}
#: Smallest share of queries whose top-5 neighbours must be unchanged, by precision: a precision
#: chosen at run time for speed (BF16) is used only where it keeps the rankings.
MIN_TOP5_AGREEMENT = {"bf16": 0.99}
#: Smallest top-5 agreement of a path that "keeps the rankings": every precision a runtime picks
#: for speed (BF16, OpenVINO's FP16 on ARM) and every path a benchmark may name fastest.
RANKINGS_MIN_TOP5 = 0.99


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
    return retrieval_agreements(reference, candidate, (k,))[0]


def retrieval_agreements(reference: np.ndarray, candidate: np.ndarray,
                         ks: Sequence[int]) -> List[float]:
    """:func:`retrieval_agreement` for each of ``ks``, from one neighbour search per array
    (the k nearest are the first k of the largest k's stable order)."""
    count = reference.shape[0]
    largest = min(max(ks), count - 1)
    if largest < 1:
        return [1.0 for _ in ks]
    ref, cand = _neighbours(reference, largest), _neighbours(candidate, largest)
    agreements = []
    for k in ks:
        k = min(k, count - 1)
        agreements.append(float(np.mean([set(ref[i, :k]) == set(cand[i, :k])
                                         for i in range(count)])))
    return agreements


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
    top1, top5 = retrieval_agreements(reference, candidate, (1, 5))
    return ParityFigures(
        images=int(reference.shape[0]), cosine_min=float(cosine.min()),
        cosine_mean=float(cosine.mean()),
        max_abs_diff=float(np.abs(reference.astype(np.float64) - candidate).max()),
        top1_agreement=top1, top5_agreement=top5, batch=batch)


def passed(figures: ParityFigures, precision: str) -> Optional[bool]:
    """Whether the figures reach the precision's thresholds (cosine and, where one is set, top-5
    agreement); None where none is set (INT8)."""
    threshold = MIN_COSINE.get(precision)
    if threshold is None:
        return None
    top5 = MIN_TOP5_AGREEMENT.get(precision, 0.0)
    return bool(figures.cosine_min >= threshold and figures.top5_agreement >= top5)


def keeps_rankings(figures: ParityFigures, precision: str) -> bool:
    """Whether a path keeps the rankings: :func:`passed` and top-5 agreement >=
    :data:`RANKINGS_MIN_TOP5`, whatever the precision (a precision without a cosine threshold,
    INT8, never does). The rule of a benchmark's fastest path and of a run-time precision other
    than fp32; an export's FP32 check keeps :func:`passed`."""
    return bool(passed(figures, precision)) and figures.top5_agreement >= RANKINGS_MIN_TOP5


def runtime_passed(figures: ParityFigures, precision: str) -> bool:
    """A run-time precision's verdict on one case: fp32 as an export (:func:`passed`), any other
    precision only where it keeps the rankings (:func:`keeps_rankings`)."""
    if precision == "fp32":
        return bool(passed(figures, precision))
    return keeps_rankings(figures, precision)


def requirement(precision: str, rankings: bool = False) -> str:
    """What :func:`passed` asks of ``precision`` (with ``rankings``: :func:`keeps_rankings`), for
    messages: ``"cosine >= 0.995, top-5 agreement >= 0.99"``."""
    parts = ["cosine >= {}".format(MIN_COSINE[precision])] if precision in MIN_COSINE else []
    top5 = MIN_TOP5_AGREEMENT.get(precision)
    if rankings and precision in MIN_COSINE:
        top5 = max(top5 or 0.0, RANKINGS_MIN_TOP5)
    if top5 is not None:
        parts.append("top-5 agreement >= {}".format(top5))
    return ", ".join(parts) or "none (reported, not judged)"


def describe(figures: ParityFigures) -> str:
    """One line of figures: ``cosine min 0.99998, top-1 100%, top-5 94%``."""
    return "cosine min {:.6f}, top-1 {:.0%}, top-5 {:.0%}{}".format(
        figures.cosine_min, figures.top1_agreement, figures.top5_agreement,
        "" if figures.batch is None else " (batch {})".format(figures.batch))


# ----------------------------------------------------------------------- run-time precisions
#
# A run-time precision (OpenVINO's BF16) is checked once, where the reference is (cvnet-export
# with PyTorch FP32), and the verdict travels in the sidecar: its ``verification`` object holds a
# ``runtime_checks`` list, one record per (backend, precision). A runner asked for that precision
# reads the record instead of checking again on every open (cvnet.engines.ov_runner).

#: Key of the list of run-time precision records inside the sidecar's ``verification`` object.
RUNTIME_CHECKS = "runtime_checks"


def runtime_check_record(backend: str, precision: str, cases: List[ParityFigures], *,
                         reference: str, backend_version: str, device: str) -> Dict[str, Any]:
    """The sidecar record of one run-time precision's agreement check.

    Args:
        backend: The runtime, e.g. ``"openvino"``.
        precision: The precision it computed in, e.g. ``"bf16"``.
        cases: Figures per batch size, against ``reference``.
        reference: What the embeddings were compared with (``"PyTorch 2.13.0 FP32"``).
        backend_version: The runtime's version.
        device: The device, e.g. ``"CPU AMD EPYC (bf16)"``.
    """
    return {"backend": backend, "precision": precision, "backend_version": backend_version,
            "device": device, "reference": reference,
            "passed": bool(cases) and all(runtime_passed(case, precision) for case in cases),
            "required": requirement(precision, rankings=precision != "fp32"),
            "cases": [dict(case._asdict()) for case in cases]}


def record_cases(record: Dict[str, Any]) -> List[ParityFigures]:
    """A record's figures per batch, as :class:`ParityFigures`; cases that lack a figure are
    left out."""
    cases = []
    for case in record.get("cases") or []:
        try:
            cases.append(ParityFigures(**{name: case[name] for name in ParityFigures._fields
                                          if name in case}))
        except (TypeError, KeyError):  # a field missing or of another kind: not a case
            continue
    return cases


def record_verdict(record: Dict[str, Any]) -> Optional[bool]:
    """A record's verdict judged again from its figures with today's thresholds
    (:func:`runtime_passed`), not the ``passed`` it stores; None where it holds no figures
    (an empty or damaged record proves nothing)."""
    cases = record_cases(record)
    if not cases:
        return None
    precision = str(record.get("precision"))
    return all(runtime_passed(case, precision) for case in cases)


def find_runtime_check(verification: Optional[Dict[str, Any]], backend: str,
                       precision: str) -> Optional[Dict[str, Any]]:
    """The record of ``backend`` at ``precision`` in a sidecar's ``verification``, if any."""
    records = (verification or {}).get(RUNTIME_CHECKS) or []
    found = [record for record in records if isinstance(record, dict)
             and record.get("backend") == backend and record.get("precision") == precision]
    return found[-1] if found else None


def record_summary(record: Dict[str, Any]) -> str:
    """A record's figures in one line (the worst case over its batch sizes)."""
    cases = record.get("cases") or []
    if not cases:
        return "no figures"
    try:
        return ("cosine min {:.6f}, top-5 agreement {:.0%} on {} images (needs {}; {} {} on "
                "{})".format(min(case["cosine_min"] for case in cases),
                             min(case["top5_agreement"] for case in cases), cases[0]["images"],
                             requirement(str(record.get("precision")),
                                         rankings=record.get("precision") != "fp32"),
                             record.get("backend"), record.get("backend_version"),
                             record.get("device")))
    except (KeyError, TypeError, ValueError):
        return "damaged figures"
