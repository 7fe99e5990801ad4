"""Open-set operating points: "is this the same vehicle?" from similarity scores (Python 3.6).

A ranked list says which gallery entry is closest; a deployment also has to say whether it is
the *same* vehicle. That decision is a threshold on the cosine similarity (``1 - distance``):
**match when similarity >= threshold**. This module measures what each threshold costs, from
the query x gallery pairs of an evaluation protocol:

- **pairs** (:func:`pair_scores`): every query x gallery pair is a *positive* (same identity)
  or a *negative* (different identities), except the pairs the ranking protocol excludes: with
  cameras, a pair of the same identity seen by the same camera (the Market-1501 / VeRi rule of
  :mod:`cvnet.core.metrics`; it also removes a query's own image when query and gallery are the
  same images). Pairs of different identities under one camera stay negatives, as they stay in
  the ranking.
- **ROC** (:func:`roc_curve`): sort the scores once, descending; each distinct score value is
  one threshold, accepting every pair scoring at least that much. Pairs with equal scores are
  accepted together, so a tie between a positive and a negative is a diagonal step, never split.
  TPR = accepted positives / positives, FPR = accepted negatives / negatives, exact counts.
- **EER** (:func:`equal_error_rate`): where FPR = FNR = 1 - TPR on the ROC drawn through its
  points with straight segments (a tie's diagonal included); its threshold is the lower end of
  the segment that crosses.
- **TPR at a target FPR** (:func:`tpr_at_fpr`): the highest TPR of the thresholds whose FPR
  does not exceed the target, and the strictest threshold that reaches it. A target below
  1 / negatives cannot be resolved: no false positive at all is then allowed, so the point is
  the strictest threshold that accepts no negative, reported with ``resolved: false`` and the
  number of negatives it would need.

Everything is torch-free and exact (integer counts of the float32 scores); ``numpy`` only. The
memory beyond the pairs' scores is one sorted copy of the negatives and O(positives): a
VeRi-776-sized split (19.4M pairs) peaked at 314 MiB, distance matrix included (docs/results.md).

Example:
    >>> scores = pair_scores(distmat, **split.rank_labels())   # positives, negatives
    >>> summary = operating_points(scores, fprs=(1e-2, 1e-3))
    >>> summary["eer"], summary["points"][1]["threshold"]
"""

import math
from typing import Any, Dict, NamedTuple, Optional, Sequence

import numpy as np

from cvnet.core.errors import ConfigError

#: False-positive rates reported by default.
DEFAULT_FPRS = (1e-2, 1e-3, 1e-4)
#: The pairs the protocol leaves out, in words (reports and JSON say it).
EXCLUSION_RULE = ("pairs of the same identity under the same camera (the ranking's rule; it "
                  "removes a query's own image)")
NO_EXCLUSION = "none (cameras unknown)"


class PairScores(NamedTuple):
    """Similarities of the positive and negative pairs of one query x gallery split.

    Attributes:
        positives: (P,) float32 cosine similarities of same-identity pairs.
        negatives: (N,) float32 cosine similarities of different-identity pairs.
        excluded: Pairs left out by the protocol (same identity, same camera).
        exclusion: The rule applied, in words.
    """

    positives: np.ndarray
    negatives: np.ndarray
    excluded: int
    exclusion: str


class Roc(NamedTuple):
    """The ROC's corners, strictest first.

    Between two distinct positive scores only negatives are accepted, so the curve runs
    horizontally there and its inner points add nothing to its shape: the ROC is kept as its
    corners (before and after each distinct positive score, and the end), at most 2P + 2 points
    whatever the number of negatives, with exact counts.

    Attributes:
        thresholds: (K,) float64, descending: point 0 accepts nothing (the smallest float32
            above every score), point i >= 1 accepts the pairs scoring >= ``thresholds[i]``.
        true_positives: (K,) int64 accepted positives.
        false_positives: (K,) int64 accepted negatives.
        num_positives: P.
        num_negatives: N.
        negatives: (N,) the negative scores, sorted ascending (thresholds inside a horizontal
            run, :func:`equal_error_rate`).
    """

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    num_positives: int
    num_negatives: int
    negatives: np.ndarray

    @property
    def tpr(self) -> np.ndarray:
        """(K,) true-positive rates."""
        return self.true_positives / float(self.num_positives)

    @property
    def fpr(self) -> np.ndarray:
        """(K,) false-positive rates."""
        return self.false_positives / float(self.num_negatives)


def similarities(distmat: np.ndarray) -> np.ndarray:
    """Cosine similarity from :func:`cvnet.core.metrics.cosine_distance`, as cvnet-match
    computes it (``1 - distance`` in float32)."""
    return (1.0 - np.asarray(distmat, np.float32)).astype(np.float32)


def pair_scores(distmat: np.ndarray, q_ids: Sequence, g_ids: Sequence,
                q_cams: Optional[Sequence] = None,
                g_cams: Optional[Sequence] = None) -> PairScores:
    """Splits a query x gallery matrix into positive and negative pair similarities.

    Args:
        distmat: (Nq, Ng) cosine distances (smaller = more similar).
        q_ids: (Nq,) query identities; ``g_ids`` (Ng,) gallery identities (comparable types).
        q_cams: (Nq,) query cameras, or None (then nothing is excluded).
        g_cams: (Ng,) gallery cameras; given exactly when ``q_cams`` is.

    Raises:
        ConfigError: Shapes disagree, or a distance is NaN.
    """
    distmat = np.asarray(distmat)
    q_ids, g_ids = np.asarray(q_ids), np.asarray(g_ids)
    if distmat.ndim != 2 or distmat.shape != (len(q_ids), len(g_ids)):
        raise ConfigError("pair_scores needs an (Nq, Ng) matrix with Nq query and Ng gallery "
                          "ids, got {} with {} and {} ids".format(distmat.shape, len(q_ids),
                                                                  len(g_ids)))
    if (q_cams is None) != (g_cams is None):
        raise ConfigError("give cameras for both query and gallery, or for neither")
    if np.isnan(distmat).any():
        raise ConfigError("the distance matrix holds NaN; check the embeddings for NaN")
    same = q_ids[:, None] == g_ids[None, :]
    scores = similarities(distmat)
    if q_cams is None:
        excluded = np.zeros_like(same)
        rule = NO_EXCLUSION
    else:
        excluded = same & (np.asarray(q_cams)[:, None] == np.asarray(g_cams)[None, :])
        rule = EXCLUSION_RULE
    return PairScores(scores[same & ~excluded], scores[~same], int(excluded.sum()), rule)


def roc_curve(positives: np.ndarray, negatives: np.ndarray) -> Roc:
    """The exact ROC of "match when score >= threshold", as its corners (see :class:`Roc`).

    Memory is one sorted copy of the negatives plus O(P): a VeRi-776-sized split (19M pairs)
    needs no per-pair labels, indices or counts.

    Args:
        positives: (P,) scores of same-identity pairs, P >= 1.
        negatives: (N,) scores of different-identity pairs, N >= 1.

    Raises:
        ConfigError: No positive or no negative pair, or a score that is not a finite number.
    """
    positives = np.sort(np.asarray(positives).ravel())
    negatives = np.sort(np.asarray(negatives).ravel())
    if len(positives) == 0 or len(negatives) == 0:
        raise ConfigError("an ROC needs positive and negative pairs, got {} and {}".format(
            len(positives), len(negatives)))
    for scores in (positives, negatives):
        if scores.dtype.kind != "f" or not (np.isfinite(scores[0]) and np.isfinite(scores[-1])):
            raise ConfigError("scores must be finite real numbers (NaN sorts last, infinities "
                              "first or last), got dtype {} from {} to {}".format(
                                  scores.dtype, scores[0], scores[-1]))
    count_p, count_n = len(positives), len(negatives)
    values = np.unique(positives)[::-1]  # distinct positive scores, descending
    # The corner before each value accepts every pair scoring above it; its threshold is the
    # smallest score above it. The corner at the value accepts it and its ties.
    above_p = np.searchsorted(positives, values, side="right")
    above_n = np.searchsorted(negatives, values, side="right")
    next_p = np.where(above_p < count_p, positives[np.minimum(above_p, count_p - 1)], np.inf)
    next_n = np.where(above_n < count_n, negatives[np.minimum(above_n, count_n - 1)], np.inf)
    corners = np.empty((len(values), 2, 3), np.float64)  # (value, before/at, thr/tp/fp)
    corners[:, 0] = np.c_[np.minimum(next_p, next_n), count_p - above_p, count_n - above_n]
    corners[:, 1] = np.c_[values, count_p - np.searchsorted(positives, values, side="left"),
                          count_n - np.searchsorted(negatives, values, side="left")]
    top = float(np.nextafter(np.float32(max(positives[-1], negatives[-1])),
                             np.float32(np.inf)))
    bottom = float(min(positives[0], negatives[0]))
    points = np.concatenate([[[top, 0, 0]], corners.reshape(-1, 3),
                             [[bottom, count_p, count_n]]])
    counts = points[:, 1:]
    keep = np.r_[True, (counts[1:] != counts[:-1]).any(axis=1)]  # the strictest of equals
    points = points[keep]
    return Roc(points[:, 0], points[:, 1].astype(np.int64), points[:, 2].astype(np.int64),
               count_p, count_n, negatives)


def area_under_curve(roc: Roc) -> float:
    """The area under the ROC (trapezoids; a tie's diagonal counts half)."""
    fpr, tpr = roc.fpr, roc.tpr
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def equal_error_rate(roc: Roc) -> Dict[str, float]:
    """The equal error rate: where FPR = FNR on the ROC's straight segments.

    Returns:
        ``{"eer": rate, "threshold": the threshold of the first ROC point at or past the
        crossing}`` (inside a horizontal run, the negative score that reaches it).
    """
    fpr, fnr = roc.fpr, 1.0 - roc.tpr
    gap = fpr - fnr  # -1 at point 0, rising to +1 at the last point
    after = int(np.argmax(gap >= 0))  # the first corner at or past the crossing (never 0)
    if gap[after] == 0:
        return {"eer": float(fpr[after]), "threshold": float(roc.thresholds[after])}
    before = after - 1
    weight = -gap[before] / (gap[after] - gap[before])
    eer = fpr[before] + weight * (fpr[after] - fpr[before])
    threshold = roc.thresholds[after]
    if roc.true_positives[after] == roc.true_positives[before]:  # horizontal: negatives only
        needed = int(math.ceil(fnr[before] * roc.num_negatives - 1e-9))  # FPR reaches FNR
        if roc.false_positives[before] < needed < roc.false_positives[after]:
            threshold = roc.negatives[roc.num_negatives - needed]
    return {"eer": float(eer), "threshold": float(threshold)}


def tpr_at_fpr(roc: Roc, target: float) -> Dict[str, Any]:
    """The highest TPR whose false-positive rate is at most ``target``, and its threshold.

    The threshold is the strictest one reaching that TPR (the loosest allowed one could only
    add false positives).

    Returns:
        ``{"fpr_target", "tpr", "fpr" (achieved), "threshold", "true_positives",
        "false_positives", "resolved", "negatives_needed"}``. ``resolved`` is False when the
        negatives are too few for ``target`` (fewer than 1 / target): the point then accepts
        no negative and its FPR says nothing about the target.
    """
    if not 0.0 < target < 1.0:
        raise ConfigError("a target false-positive rate must be in (0, 1), got {}".format(target))
    allowed = int(math.floor(target * roc.num_negatives * (1.0 + 1e-12)))
    loosest = int(np.searchsorted(roc.false_positives, allowed, side="right")) - 1
    # The strictest threshold with the same TPR: lower ones would only add false positives.
    point = int(np.searchsorted(roc.true_positives, roc.true_positives[loosest], side="left"))
    return {"fpr_target": float(target), "tpr": float(roc.tpr[point]),
            "fpr": float(roc.fpr[point]), "threshold": float(roc.thresholds[point]),
            "true_positives": int(roc.true_positives[point]),
            "false_positives": int(roc.false_positives[point]),
            "resolved": allowed >= 1,
            "negatives_needed": int(math.ceil(1.0 / target - 1e-9))}


def operating_points(scores: PairScores, fprs: Sequence[float] = DEFAULT_FPRS
                     ) -> Dict[str, Any]:
    """Everything a report says about one split's decisions, as JSON types.

    Returns:
        ``{"positives", "negatives", "excluded", "exclusion", "auc", "eer", "eer_threshold",
        "points": [tpr_at_fpr(...) per target]}``.
    """
    roc = roc_curve(scores.positives, scores.negatives)
    eer = equal_error_rate(roc)
    return {"positives": roc.num_positives, "negatives": roc.num_negatives,
            "excluded": scores.excluded, "exclusion": scores.exclusion,
            "auc": area_under_curve(roc), "eer": eer["eer"], "eer_threshold": eer["threshold"],
            "points": [tpr_at_fpr(roc, target) for target in fprs]}


def format_fpr(value: float) -> str:
    """``1e-3`` -> ``"1e-03"``: how reports and options spell a rate."""
    return "{:.0e}".format(value) if value < 0.1 else "{:g}".format(value)
