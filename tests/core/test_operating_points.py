"""Operating points: the ROC, EER and TPR at a target FPR against answers worked out by hand and
against a brute-force count over every threshold."""

import numpy as np
import pytest

from cvnet.core.errors import ConfigError
from cvnet.core.operating_points import (EXCLUSION_RULE, NO_EXCLUSION, area_under_curve,
                                         equal_error_rate, format_fpr, operating_points,
                                         pair_scores, roc_curve, tpr_at_fpr)

pytestmark = pytest.mark.device


def test_perfectly_separated_scores():
    roc = roc_curve([0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.65])
    assert equal_error_rate(roc) == {"eer": 0.0, "threshold": 0.7}
    assert area_under_curve(roc) == 1.0
    for target in (0.5, 1e-2, 1e-4):
        point = tpr_at_fpr(roc, target)
        assert point["tpr"] == 1.0 and point["fpr"] == 0.0 and point["threshold"] == 0.7


def test_fully_overlapping_scores():
    roc = roc_curve([0.5] * 3, [0.5] * 5)
    assert roc.tpr.tolist() == [0.0, 1.0] and roc.fpr.tolist() == [0.0, 1.0]
    assert equal_error_rate(roc)["eer"] == pytest.approx(0.5)
    assert area_under_curve(roc) == pytest.approx(0.5)
    point = tpr_at_fpr(roc, 0.5)  # the tie cannot be split: nothing is accepted
    assert point["tpr"] == 0.0 and point["false_positives"] == 0
    assert point["threshold"] > 0.5 and np.float32(point["threshold"]) == np.nextafter(
        np.float32(0.5), np.float32(1))


def test_a_small_set_worked_out_by_hand():
    # Descending: 0.9 P, 0.8 N, 0.7 P, 0.6 N, 0.4 P, 0.3 N, 0.2 N (3 positives, 4 negatives).
    roc = roc_curve([0.9, 0.7, 0.4], [0.8, 0.6, 0.3, 0.2])
    # The corners: 0.3 (between 0.4 and the end, negatives only) lies on the last run.
    assert roc.true_positives.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert roc.false_positives.tolist() == [0, 0, 1, 1, 2, 2, 4]
    np.testing.assert_allclose(roc.thresholds[1:], [0.9, 0.8, 0.7, 0.6, 0.4, 0.2])
    # FPR = FNR between (1/4, 2/3) and (2/4, 2/3): FNR stays 1/3, FPR reaches it a third in.
    assert equal_error_rate(roc)["eer"] == pytest.approx(1 / 3)
    assert equal_error_rate(roc)["threshold"] == pytest.approx(0.6)
    assert area_under_curve(roc) == pytest.approx(9 / 12)  # 9 of 12 pairs ordered right
    quarter = tpr_at_fpr(roc, 0.25)  # one false positive allowed
    assert quarter["tpr"] == pytest.approx(2 / 3) and quarter["threshold"] == pytest.approx(0.7)
    assert quarter["fpr"] == 0.25 and quarter["resolved"]
    tenth = tpr_at_fpr(roc, 0.1)  # 4 negatives cannot resolve 10%: no false positive allowed
    assert tenth["tpr"] == pytest.approx(1 / 3) and tenth["threshold"] == pytest.approx(0.9)
    assert not tenth["resolved"] and tenth["negatives_needed"] == 10


def test_ties_between_a_positive_and_a_negative_are_a_diagonal():
    roc = roc_curve([0.5, 0.5], [0.5, 0.1])
    assert roc.tpr.tolist() == [0.0, 1.0, 1.0] and roc.fpr.tolist() == [0.0, 0.5, 1.0]
    # The diagonal from (0, 0) to (1/2, 1) meets FPR = 1 - TPR two thirds along.
    assert equal_error_rate(roc) == {"eer": pytest.approx(1 / 3), "threshold": 0.5}
    assert tpr_at_fpr(roc, 0.4)["tpr"] == 0.0  # accepting the tie would cost FPR 0.5
    assert tpr_at_fpr(roc, 0.5)["tpr"] == 1.0


def _brute_force(positives, negatives, target):
    """TPR and threshold at a target FPR by trying every candidate threshold: the highest TPR,
    then the highest threshold that reaches it."""
    best = (0.0, -np.inf)
    for threshold in np.unique(np.r_[positives, negatives]):
        fpr = np.mean(negatives >= threshold)
        tpr = np.mean(positives >= threshold)
        if fpr <= target and (tpr, threshold) > best:
            best = (tpr, threshold)
    return best


@pytest.mark.parametrize("seed, decimals", [(seed, 2) for seed in range(5)] + [(5, 4), (6, 6)])
def test_against_a_brute_force_count(seed, decimals):
    rng = np.random.RandomState(seed)
    positives = np.round(rng.normal(0.6, 0.15, 300), decimals)  # 2 decimals: many ties
    negatives = np.round(rng.normal(0.3, 0.15, 2000), decimals)
    roc = roc_curve(positives, negatives)
    for point in range(1, len(roc.thresholds)):
        threshold = roc.thresholds[point]
        assert roc.true_positives[point] == (positives >= threshold).sum()
        assert roc.false_positives[point] == (negatives >= threshold).sum()
    for target in (0.2, 1e-2, 1e-3):
        tpr, threshold = _brute_force(positives, negatives, target)
        point = tpr_at_fpr(roc, target)
        assert point["tpr"] == pytest.approx(tpr)
        if tpr > 0:
            assert point["threshold"] == pytest.approx(threshold)
    # The EER's threshold against the full curve (every distinct score a point): the first
    # point at or past FPR = FNR.
    full = np.unique(np.r_[positives, negatives])[::-1]
    gaps = [np.mean(negatives >= t) - np.mean(positives < t) for t in full]
    assert equal_error_rate(roc)["threshold"] == full[np.argmax(np.array(gaps) >= 0)]
    # The EER against a fine sweep of the same straight-segment curve.
    eer = equal_error_rate(roc)["eer"]
    weights = np.linspace(0, 1, 2001)[:, None]
    fpr = roc.fpr[:-1] + weights * np.diff(roc.fpr)
    fnr = 1 - (roc.tpr[:-1] + weights * np.diff(roc.tpr))
    closest = np.unravel_index(np.argmin(np.abs(fpr - fnr)), fpr.shape)
    assert eer == pytest.approx(fpr[closest], abs=1e-3)
    auc = np.mean(positives[:, None] > negatives[None, :]) + 0.5 * np.mean(
        positives[:, None] == negatives[None, :])  # Mann-Whitney, ties half
    assert area_under_curve(roc) == pytest.approx(auc)


def test_pair_scores_leave_out_what_the_ranking_leaves_out():
    distmat = np.array([[0.1, 0.2, 0.7], [0.3, 0.9, 0.4]], np.float32)
    plain = pair_scores(distmat, ["a", "b"], ["a", "a", "b"])
    np.testing.assert_allclose(sorted(plain.positives), [0.6, 0.8, 0.9], atol=1e-6)
    np.testing.assert_allclose(sorted(plain.negatives), [0.1, 0.3, 0.7], atol=1e-6)
    assert plain.excluded == 0 and plain.exclusion == NO_EXCLUSION
    ruled = pair_scores(distmat, ["a", "b"], ["a", "a", "b"], ["c1", "c1"], ["c1", "c2", "c2"])
    np.testing.assert_allclose(sorted(ruled.positives), [0.6, 0.8], atol=1e-6)  # (a, c1) twice
    assert ruled.excluded == 1 and ruled.exclusion == EXCLUSION_RULE
    assert len(ruled.negatives) == 3  # different ids under one camera stay negatives


def test_operating_points_summary_and_refusals():
    scores = pair_scores(np.array([[0.0, 1.0], [1.0, 0.0]]), [1, 2], [1, 2])
    summary = operating_points(scores, fprs=(0.5, 1e-3))
    assert summary["eer"] == 0.0 and summary["positives"] == 2 and summary["negatives"] == 2
    assert [p["resolved"] for p in summary["points"]] == [True, False]
    with pytest.raises(ConfigError, match="positive and negative pairs"):
        roc_curve([], [0.1])
    with pytest.raises(ConfigError, match="in \\(0, 1\\)"):
        tpr_at_fpr(roc_curve([1.0], [0.0]), 0.0)
    with pytest.raises(ConfigError, match="NaN"):
        pair_scores(np.array([[np.nan]]), [1], [1])
    assert [format_fpr(f) for f in (1e-2, 1e-3, 1e-4, 0.5)] == ["1e-02", "1e-03", "1e-04", "0.5"]
