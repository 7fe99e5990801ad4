"""ReID metrics on hand-worked cases, against a per-query reference, and their error paths."""

import logging

import numpy as np
import pytest

from cvnet.core import metrics
from cvnet.core.errors import ConfigError, DatasetError
from cvnet.core.metrics import aggregate_trials, cosine_distance, evaluate_rank, summarize_metrics

pytestmark = pytest.mark.device


def _reference(distmat, q_ids, g_ids, q_cams=None, g_cams=None, max_rank=10):
    """The textbook loop: one query at a time, stable argsort, remove same-id same-camera."""
    aps, inps, cmcs = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="mergesort")
        same = g_ids[order] == q_ids[i]
        keep = np.ones(len(order), bool) if q_cams is None else ~(same & (g_cams[order] ==
                                                                          q_cams[i]))
        ranks = np.flatnonzero(same[keep]) + 1
        if len(ranks) == 0:
            continue
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / float(ranks[-1]))
        cmcs.append((np.arange(1, max_rank + 1) >= ranks[0]).astype(float))
    return np.mean(aps), np.mean(inps), np.mean(cmcs, axis=0), len(aps)


def test_hand_worked_multiple_matches():
    # Gallery ids:            1    2    1    3    1    2
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],    # query 0, id 1
                        [0.9, 0.2, 0.8, 0.1, 0.7, 0.4]])   # query 1, id 2
    # Query 0 ranks ids 1, 2, 1, 3, 1, 2: true matches at ranks 1, 3, 5.
    #   AP = (1/1 + 2/3 + 3/5) / 3 = 0.755556; INP = 3 matches / rank 5 = 0.6.
    # Query 1 ranks columns 3, 1, 5, 4, 2, 0 = ids 3, 2, 2, 1, 1, 1: matches at ranks 2, 3.
    #   AP = (1/2 + 2/3) / 2 = 0.583333; INP = 2 / 3 = 0.666667.
    # mAP = 0.669444, mINP = 0.633333; CMC: rank 1 = 1/2 (query 0 only), rank >= 2 = 1.
    result = evaluate_rank(distmat, np.array([1, 2]), np.array([1, 2, 1, 3, 1, 2]), max_rank=5)
    assert result["mAP"] == pytest.approx(0.669444, abs=1e-6)
    assert result["mINP"] == pytest.approx(0.633333, abs=1e-6)
    np.testing.assert_allclose(result["cmc"], [0.5, 1.0, 1.0, 1.0, 1.0])
    assert result["cmc"].shape == (5,)
    assert result["num_valid_queries"] == 2 and result["num_skipped_queries"] == 0


def test_single_query_ap_inp_and_cmc_at_several_ranks():
    # Ranked ids 2, 3, 1, 4, 1 for a query of id 1: matches at ranks 3 and 5.
    #   AP = (1/3 + 2/5) / 2 = 0.366667; INP = 2 / 5 = 0.4; CMC: 0, 0, 1, 1, 1, ...
    distmat = np.array([[0.5, 0.1, 0.2, 0.9, 0.6]])
    g_ids = np.array(["1", "2", "3", "1", "4"])
    result = evaluate_rank(distmat, np.array(["1"]), g_ids, max_rank=5)
    assert result["mAP"] == pytest.approx(0.366667, abs=1e-6)
    assert result["mINP"] == pytest.approx(0.4)
    np.testing.assert_array_equal(result["cmc"], [0, 0, 1, 1, 1])


def test_ties_keep_gallery_order():
    # Both gallery entries at the same distance: the lower gallery index ranks first.
    tied = np.array([[0.5, 0.5]])
    first_wrong = evaluate_rank(tied, np.array([1]), np.array([2, 1]), max_rank=2)
    assert first_wrong["mAP"] == pytest.approx(0.5)  # match at rank 2
    np.testing.assert_array_equal(first_wrong["cmc"], [0, 1])
    first_right = evaluate_rank(tied, np.array([1]), np.array([1, 2]), max_rank=2)
    assert first_right["mAP"] == pytest.approx(1.0)
    np.testing.assert_array_equal(first_right["cmc"], [1, 1])


def test_query_without_true_match_is_skipped_and_counted(caplog):
    distmat = np.array([[0.1, 0.2], [0.3, 0.4]])
    with caplog.at_level(logging.WARNING, logger="cvnet.core.metrics"):
        result = evaluate_rank(distmat, np.array([1, 9]), np.array([1, 2]), max_rank=2)
    assert result["num_valid_queries"] == 1 and result["num_skipped_queries"] == 1
    assert result["mAP"] == pytest.approx(1.0)  # only the valid query counts
    assert "1 of 2 queries have no true match" in caplog.text


def test_camera_rule_removes_same_id_same_camera_entries():
    # Query id 1, camera c1. Gallery: (1, c1) at 0.1, (2, c2) at 0.2, (1, c2) at 0.3.
    # Without cameras: matches at ranks 1 and 3 -> AP = (1 + 2/3) / 2 = 0.833333.
    # With cameras the (1, c1) entry is removed: gallery (2, c2), (1, c2) -> match at rank 2,
    # AP = 1/2, INP = 1/2, CMC = 0, 1.
    distmat = np.array([[0.1, 0.2, 0.3]])
    q_ids, g_ids = np.array([1]), np.array([1, 2, 1])
    q_cams, g_cams = np.array(["c1"]), np.array(["c1", "c2", "c2"])
    plain = evaluate_rank(distmat, q_ids, g_ids, max_rank=2)
    assert plain["mAP"] == pytest.approx(0.833333, abs=1e-6)
    ruled = evaluate_rank(distmat, q_ids, g_ids, q_cams, g_cams, max_rank=2)
    assert ruled["mAP"] == pytest.approx(0.5) and ruled["mINP"] == pytest.approx(0.5)
    np.testing.assert_array_equal(ruled["cmc"], [0, 1])


def test_camera_rule_can_leave_a_query_without_matches(caplog):
    distmat = np.array([[0.1, 0.2], [0.1, 0.2]])
    with caplog.at_level(logging.WARNING, logger="cvnet.core.metrics"):
        result = evaluate_rank(distmat, np.array([1, 2]), np.array([1, 2]),
                               np.array([0, 0]), np.array([0, 1]), max_rank=2)
    assert result["num_valid_queries"] == 1  # query 0's only match shares its camera
    assert "after removing same-id same-camera entries" in caplog.text


def test_no_valid_query_raises():
    with pytest.raises(DatasetError, match="no query has a true match"):
        evaluate_rank(np.zeros((2, 3)), np.array([1, 2]), np.array([3, 4, 5]))


def test_max_rank_beyond_gallery_pads_and_warns_once(caplog):
    distmat = np.array([[0.2, 0.1, 0.3]])
    metrics._WARNED_MAX_RANK.clear()
    with caplog.at_level(logging.WARNING, logger="cvnet.core.metrics"):
        result = evaluate_rank(distmat, np.array([1]), np.array([2, 3, 1]), max_rank=6)
        evaluate_rank(distmat, np.array([1]), np.array([2, 3, 1]), max_rank=6)
    np.testing.assert_array_equal(result["cmc"], [0, 0, 1, 1, 1, 1])
    assert caplog.text.count("exceeds the gallery size 3") == 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cameras", [False, True])
def test_matches_the_per_query_reference_with_heavy_ties(seed, cameras, monkeypatch):
    rng = np.random.RandomState(seed)
    num_q, num_g = rng.randint(5, 40), rng.randint(5, 60)
    q_ids, g_ids = rng.randint(0, 6, num_q), rng.randint(0, 6, num_g)
    q_ids[0] = g_ids[0]  # at least one valid query
    q_cams, g_cams = rng.randint(0, 3, num_q), rng.randint(0, 3, num_g)
    q_cams[0] = (g_cams[0] + 1) % 3
    distmat = rng.randint(0, 4, (num_q, num_g)).astype(np.float32)  # few values: many ties
    cams = (q_cams, g_cams) if cameras else (None, None)
    mean_ap, mean_inp, cmc, valid = _reference(distmat, q_ids, g_ids, *cams, max_rank=10)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 3 * num_g + 1)  # several chunks of 3 rows
    result = evaluate_rank(distmat, q_ids, g_ids, *cams, max_rank=10)
    assert result["mAP"] == pytest.approx(mean_ap)
    assert result["mINP"] == pytest.approx(mean_inp)
    np.testing.assert_allclose(result["cmc"], cmc)
    assert result["num_valid_queries"] == valid


def test_integer_and_float64_distances_give_the_same_result():
    rng = np.random.RandomState(3)
    distmat = rng.randint(0, 5, (6, 9))
    q_ids, g_ids = rng.randint(0, 3, 6), rng.randint(0, 3, 9)
    q_ids[:] = g_ids[0]
    as_int = evaluate_rank(distmat, q_ids, g_ids, max_rank=3)
    as_float = evaluate_rank(distmat.astype(np.float64), q_ids, g_ids, max_rank=3)
    assert as_int["mAP"] == as_float["mAP"]


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate_rank(np.zeros(3), [1], [1, 2, 3]), "non-empty"),
    (lambda: evaluate_rank(np.zeros((0, 3)), [], [1, 2, 3]), "non-empty"),
    (lambda: evaluate_rank(np.zeros((2, 3)), [1], [1, 2, 3]), "q_ids must be .* length 2"),
    (lambda: evaluate_rank(np.zeros((1, 3)), [1], [[1, 2, 3]]), "g_ids must be .* length 3"),
    (lambda: evaluate_rank(np.zeros((1, 2)), [1], [1, 2], q_cams=[0]), "both query and gallery"),
    (lambda: evaluate_rank(np.zeros((1, 2)), [1], [1, 2], [0], [0]), "g_cams must be"),
    (lambda: evaluate_rank(np.zeros((1, 2)), [1], ["1", "2"]), "both be integers or both"),
    (lambda: evaluate_rank(np.array([[np.nan, 0.0]]), [1], [1, 2]), "1 NaN"),
    (lambda: evaluate_rank(np.array([["a", "b"]]), [1], [1, 2]), "real numbers"),
    (lambda: evaluate_rank(np.zeros((1, 2)), [1], [1, 2], max_rank=0), "max_rank"),
])
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_cosine_distance():
    query = np.array([[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    gallery = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    distance = cosine_distance(query, gallery)
    assert distance.dtype == np.float32 and distance.shape == (3, 3)
    np.testing.assert_allclose(distance, [[0, 1, 2], [1, 0, 1], [1, 1, 1]], atol=1e-6)
    with pytest.raises(ConfigError, match="same D"):
        cosine_distance(np.zeros((2, 4)), np.zeros((3, 5)))


def test_summarize_and_aggregate_trials():
    first = evaluate_rank(np.array([[0.1, 0.2]]), [1], [1, 2], max_rank=2)  # AP 1
    second = evaluate_rank(np.array([[0.2, 0.1]]), [1], [1, 2], max_rank=2)  # AP 0.5
    summary = summarize_metrics(second, ranks=(1, 2))
    assert summary == {"mAP": 0.5, "mINP": 0.5, "rank1": 0.0, "rank2": 1.0,
                       "num_valid_queries": 1}
    with pytest.raises(ConfigError, match="rank 5 is outside"):
        summarize_metrics(second, ranks=(5,))
    aggregated = aggregate_trials([first, second])
    assert aggregated["mAP"] == {"mean": 0.75, "std": 0.25}
    np.testing.assert_allclose(aggregated["cmc"]["mean"], [0.5, 1.0])
    np.testing.assert_allclose(aggregated["cmc"]["std"], [0.5, 0.0])
    assert aggregate_trials([summary, summary])["rank2"] == {"mean": 1.0, "std": 0.0}
    with pytest.raises(ConfigError, match="no results"):
        aggregate_trials([])
    with pytest.raises(ConfigError, match="trial 1 has metrics"):
        aggregate_trials([first, summary])
