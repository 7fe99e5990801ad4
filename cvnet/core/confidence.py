"""Bootstrap confidence intervals of per-query metrics (torch-free, Python 3.6).

mAP and Rank-1 are means over queries, so their sampling error is that of a mean over the
queries a test set happened to hold. The percentile bootstrap estimates it without a model of
the distribution: draw the queries ``resamples`` times with replacement (the same draw for every
metric, so intervals of mAP and Rank-1 are paired), take each draw's mean, and report the 2.5th
and 97.5th percentiles of those means as the 95% interval. The gallery is fixed: the interval
says how much the figure would move with other queries of the same kind, not with another
gallery.

Everything is seeded (``numpy.random.RandomState``, the same stream under numpy 1.19 and later)
and vectorised: the resamples are drawn as index blocks of at most :data:`BLOCK_ELEMENTS`, so
1000 resamples of 10,000 queries cost a fraction of a second.

Example:
    >>> result = evaluate_rank(distmat, **split.rank_labels())
    >>> intervals = query_intervals(result, resamples=1000, seed=0)
    >>> intervals["mAP"]                                    # (low, high), fractions
"""

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from cvnet.core.errors import ConfigError

#: Resamples a report uses by default.
DEFAULT_RESAMPLES = 1000
#: Indices drawn at once (8M int64 = 64 MiB at most).
BLOCK_ELEMENTS = 1 << 23


def bootstrap_means(values: Mapping[str, np.ndarray], *, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> Dict[str, np.ndarray]:
    """The means of ``resamples`` draws with replacement, one draw shared by every metric.

    Args:
        values: Metric name -> (N,) per-query values, every array of the same length N >= 1.
        resamples: Number of draws (>= 1).
        seed: Seed of the draws.

    Returns:
        Metric name -> (resamples,) float64 means.

    Raises:
        ConfigError: No metric, no query, arrays of different lengths or ``resamples`` < 1.
    """
    arrays = {name: np.asarray(array, np.float64) for name, array in values.items()}
    lengths = {name: array.shape for name, array in arrays.items()}
    if not arrays or len(set(lengths.values())) != 1 or len(next(iter(lengths.values()))) != 1:
        raise ConfigError("bootstrap needs 1-D per-query arrays of one length, got shapes "
                          "{}".format(lengths))
    count = len(next(iter(arrays.values())))
    if count < 1:
        raise ConfigError("bootstrap needs at least one query, got none")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 1:
        raise ConfigError("resamples must be a positive integer, got {!r}".format(resamples))
    rng = np.random.RandomState(seed)
    means = {name: np.empty(resamples, np.float64) for name in arrays}
    block = max(1, BLOCK_ELEMENTS // count)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        draw = rng.randint(0, count, size=(stop - start, count))
        for name, array in arrays.items():
            means[name][start:stop] = array[draw].mean(axis=1)
    return means


def percentile_interval(means: np.ndarray, level: float = 0.95) -> Tuple[float, float]:
    """The central ``level`` interval of bootstrap means: (low, high) percentiles."""
    if not 0.0 < level < 1.0:
        raise ConfigError("confidence level must be in (0, 1), got {}".format(level))
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(np.asarray(means, np.float64), [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_intervals(values: Mapping[str, np.ndarray], *,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                        level: float = 0.95) -> Dict[str, Tuple[float, float]]:
    """Percentile bootstrap intervals of the mean of each per-query metric.

    Args:
        values: Metric name -> (N,) per-query values (see :func:`bootstrap_means`).
        resamples: Number of draws.
        seed: Seed of the draws.
        level: Coverage of the interval, 0.95 for 95%.

    Returns:
        Metric name -> (low, high), in the values' unit.
    """
    means = bootstrap_means(values, resamples=resamples, seed=seed)
    return {name: percentile_interval(draws, level) for name, draws in means.items()}


def query_intervals(result: Mapping[str, np.ndarray], *, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0, level: float = 0.95,
                    metrics: Sequence[str] = ("mAP", "rank1")) -> Dict[str, Tuple[float, float]]:
    """Bootstrap intervals of mAP and Rank-1 from :func:`cvnet.core.metrics.evaluate_rank`.

    Args:
        result: Holds ``query_ap`` and ``query_first_rank`` (one value per valid query).
        resamples, seed, level: See :func:`bootstrap_intervals`.
        metrics: Which of ``mAP``, ``rank1``, ``rank5``, ``rank10`` to report.

    Returns:
        Metric -> (low, high) fractions in [0, 1].
    """
    first_rank = np.asarray(result["query_first_rank"])
    per_query = {}
    for name in metrics:
        if name == "mAP":
            per_query[name] = np.asarray(result["query_ap"], np.float64)
        elif name.startswith("rank") and name[4:].isdigit():
            per_query[name] = (first_rank <= int(name[4:])).astype(np.float64)
        else:
            raise ConfigError("no per-query values for metric {!r}; expected mAP or rankK".format(
                name))
    return bootstrap_intervals(per_query, resamples=resamples, seed=seed, level=level)
