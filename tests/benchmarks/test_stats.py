"""Latency statistics on samples whose answers are known by hand."""

import pytest

from cvnet.benchmarks.stats import latency_stats, percentile
from cvnet.core.errors import ConfigError

pytestmark = pytest.mark.device


def test_percentiles_interpolate_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_latency_stats_of_known_times():
    stats = latency_stats([0.010, 0.020, 0.030, 0.040], batch=8)
    assert stats.runs == 4 and stats.batch == 8
    assert stats.mean_ms == pytest.approx(25.0)
    assert stats.std_ms == pytest.approx(11.1803, abs=1e-4)  # population std
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == pytest.approx((25.0, 37.0, 39.7))
    assert stats.throughput == pytest.approx(32 / 0.1)  # 4 batches of 8 in 0.1 s
    assert stats.total_s == pytest.approx(0.1)


def test_constant_times_have_no_spread():
    stats = latency_stats([0.005] * 7, batch=1)
    assert stats.std_ms == 0.0
    assert stats.p50_ms == stats.p99_ms == pytest.approx(5.0)
    assert stats.throughput == pytest.approx(200.0)


@pytest.mark.parametrize("times, batch", [([], 1), ([0.1], 0), ([-0.1], 1)])
def test_bad_samples_are_refused(times, batch):
    with pytest.raises(ConfigError, match="at least one non-negative time"):
        latency_stats(times, batch)
    if not times:
        with pytest.raises(ConfigError, match="no values"):
            percentile(times, 50)
