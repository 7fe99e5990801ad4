"""Bootstrap intervals: known answers, determinism, and coverage of a known mean."""

import numpy as np
import pytest

from cvnet.core.confidence import bootstrap_intervals, bootstrap_means, query_intervals
from cvnet.core.errors import ConfigError
from cvnet.core.metrics import evaluate_rank

pytestmark = pytest.mark.device


def test_identical_queries_give_a_zero_width_interval():
    intervals = bootstrap_intervals({"mAP": np.full(50, 0.37), "rank1": np.ones(50)})
    low, high = intervals["mAP"]
    assert low == high == pytest.approx(0.37)  # the mean of any draw of equal values
    assert intervals["rank1"] == (1.0, 1.0)


def test_two_queries_known_distribution():
    # Means of two draws from {0, 1}: 0 (1/4), 1/2 (1/2), 1 (1/4): the 95% interval is [0, 1].
    means = bootstrap_means({"x": np.array([0.0, 1.0])}, resamples=4000, seed=3)["x"]
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.03)
    assert bootstrap_intervals({"x": np.array([0.0, 1.0])}, resamples=4000) == {"x": (0.0, 1.0)}


def test_seeded_paired_and_shrinking_with_more_queries():
    rng = np.random.RandomState(0)
    values = rng.rand(400)
    first = bootstrap_intervals({"a": values}, seed=5)
    assert first == bootstrap_intervals({"a": values}, seed=5)
    assert first != bootstrap_intervals({"a": values}, seed=6)
    paired = bootstrap_means({"a": values, "b": values}, resamples=50)
    np.testing.assert_array_equal(paired["a"], paired["b"])  # one draw for every metric
    low, high = first["a"]
    assert low < values.mean() < high
    small = bootstrap_intervals({"a": values[:100]}, seed=5)["a"]
    assert (small[1] - small[0]) / (high - low) == pytest.approx(2.0, rel=0.25)  # 1/sqrt(n)


def test_coverage_of_a_known_mean():
    """95% intervals of Bernoulli(0.3) samples of 200 queries cover 0.3 about 95% of the time."""
    rng = np.random.RandomState(1)
    covered = 0
    trials = 300
    for trial in range(trials):
        sample = (rng.rand(200) < 0.3).astype(float)
        low, high = bootstrap_intervals({"r": sample}, resamples=500, seed=trial)["r"]
        covered += low <= 0.3 <= high
    assert 0.90 <= covered / float(trials) <= 0.99


def test_query_intervals_from_evaluate_rank():
    distmat = np.array([[0.1, 0.5, 0.9], [0.6, 0.2, 0.3], [0.2, 0.1, 0.4]])
    result = evaluate_rank(distmat, [1, 2, 3], [1, 2, 3], max_rank=3)
    assert result["query_first_rank"].tolist() == [1, 1, 3]
    np.testing.assert_allclose(result["query_ap"], [1.0, 1.0, 1 / 3])
    intervals = query_intervals(result, resamples=2000, metrics=("mAP", "rank1", "rank5"))
    assert intervals["rank5"] == (1.0, 1.0)
    # Rank-1 hits 1, 1, 0: a draw of three misses has probability 1/27 > 2.5%, three hits 8/27.
    assert intervals["rank1"] == (0.0, 1.0)
    low, high = intervals["mAP"]
    assert 1 / 3 <= low < result["mAP"] < high <= 1.0
    with pytest.raises(ConfigError, match="no per-query values"):
        query_intervals(result, metrics=("mINP",))
    with pytest.raises(ConfigError, match="one length"):
        bootstrap_means({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(ConfigError, match="positive integer"):
        bootstrap_means({"a": np.ones(3)}, resamples=0)
