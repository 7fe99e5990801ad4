"""Latency statistics of timed runs: mean, std and percentiles in milliseconds, throughput.

Percentiles interpolate linearly between the two nearest ranks (numpy's default), so the p50 of
``[1, 2, 3, 4]`` ms is 2.5 ms.
"""

from typing import NamedTuple, Sequence

import numpy as np

from cvnet.core.errors import ConfigError


class LatencyStats(NamedTuple):
    """The distribution of per-batch times of one configuration.

    Attributes:
        runs: Number of timed batches.
        batch: Images per batch.
        mean_ms: Mean milliseconds per batch.
        std_ms: Population standard deviation, milliseconds.
        p50_ms: Median, milliseconds.
        p90_ms: 90th percentile, milliseconds.
        p99_ms: 99th percentile, milliseconds.
        throughput: Images per second, ``runs * batch / total seconds``.
        total_s: Seconds of all timed batches together.
    """

    runs: int
    batch: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float
    total_s: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated."""
    if len(values) == 0:
        raise ConfigError("no values to take a percentile of; time at least one run")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_stats(seconds: Sequence[float], batch: int) -> LatencyStats:
    """Summarises per-batch wall times.

    Args:
        seconds: Seconds each timed batch took (after warm-up).
        batch: Images per batch.

    Raises:
        ConfigError: No times, a negative time or a batch below 1.
    """
    times = np.asarray(seconds, dtype=np.float64)
    if times.size == 0 or batch < 1 or (times < 0).any():
        raise ConfigError("latency statistics need at least one non-negative time and a batch "
                          ">= 1; got {} times, batch {}".format(times.size, batch))
    ms = times * 1e3
    total = float(times.sum())
    return LatencyStats(
        runs=int(times.size), batch=int(batch), mean_ms=float(ms.mean()),
        std_ms=float(ms.std()), p50_ms=percentile(ms, 50), p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        throughput=float(times.size * batch / total) if total > 0 else float("inf"),
        total_s=total)
