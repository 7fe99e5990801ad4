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
memory beyond the pairs' scores is one sorted copy and the distinct values, which keeps a
VeRi-776-sized evaluation (19M pairs) within a few hundred MB on a Jetson.

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
    """The ROC at every distinct score, strictest first.

    Attributes:
        thresholds: (K+1,) float64, descending: point 0 accepts nothing (the smallest float32
            above every score), point i >= 1 accepts the pairs scoring >= ``thresholds[i]``.
        true_positives: (K+1,) int64 accepted positives.
        false_positives: (K+1,) int64 accepted negatives.
        num_positives: P.
        num_negatives: N.
    """

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    num_positives: int
    num_negatives: int

    @property
    def tpr(self) -> np.ndarray:
        """(K+1,) true-positive rates."""
        return self.true_positives / float(self.num_positives)

    @property
    def fpr(self) -> np.ndarray:
        """(K+1,) false-positive rates."""
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
    """The exact ROC of "match when score >= threshold" (see the module docstring).

    Memory is one copy of the scores (sorted in place) plus the distinct values: no labels or
    sort indices are kept, since the accepted positives at a threshold are found by a binary
    search in the sorted positives. Scores keep their dtype (float32 from :func:`pair_scores`).

    Args:
        positives: (P,) scores of same-identity pairs, P >= 1.
        negatives: (N,) scores of different-identity pairs, N >= 1.

    Raises:
        ConfigError: No positive or no negative pair, or a non-finite score.
    """
    positives = np.sort(np.asarray(positives).ravel())
    negatives = np.asarray(negatives).ravel()
    if len(positives) == 0 or len(negatives) == 0:
        raise ConfigError("an ROC needs positive and negative pairs, got {} and {}".format(
            len(positives), len(negatives)))
    scores = np.concatenate([positives, negatives])
    if scores.dtype.kind != "f" or not np.isfinite(scores).all():
        raise ConfigError("scores must be finite real numbers, got dtype {} with {} non-finite"
                          .format(scores.dtype, int((~np.isfinite(scores)).sum())
                                  if scores.dtype.kind == "f" else "?"))
    scores.sort()
    scores = scores[::-1]  # descending (a view)
    ends = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]  # last of a value
    thresholds = scores[ends].astype(np.float64)
    true_positives = len(positives) - np.searchsorted(positives, scores[ends], side="left")
    false_positives = ends + 1 - true_positives
    top = float(np.nextafter(np.float32(scores[0]), np.float32(np.inf)))
    return Roc(np.r_[top, thresholds], np.r_[0, true_positives].astype(np.int64),
               np.r_[0, false_positives].astype(np.int64), len(positives), len(negatives))


def area_under_curve(roc: Roc) -> float:
    """The area under the ROC (trapezoids; a tie's diagonal counts half)."""
    fpr, tpr = roc.fpr, roc.tpr
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def equal_error_rate(roc: Roc) -> Dict[str, float]:
    """The equal error rate: where FPR = FNR on the ROC's straight segments.

    Returns:
        ``{"eer": rate, "threshold": the lower end of the crossing segment}``.
    """
    fpr, fnr = roc.fpr, 1.0 - roc.tpr
    gap = fpr - fnr  # -1 at point 0, rising to +1 at the last point
    after = int(np.argmax(gap >= 0))  # the first point at or past the crossing (never 0)
    if gap[after] == 0:
        return {"eer": float(fpr[after]), "threshold": float(roc.thresholds[after])}
    before = after - 1
    weight = -gap[before] / (gap[after] - gap[before])
    eer = fpr[before] + weight * (fpr[after] - fpr[before])
    return {"eer": float(eer), "threshold": float(roc.thresholds[after])}


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
