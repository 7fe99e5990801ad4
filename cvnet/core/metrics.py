"""ReID ranking metrics: mAP, mINP and CMC from a distance matrix (torch-free, Python 3.6).

One function, :func:`evaluate_rank`, serves every backend (PyTorch evaluation, ONNX Runtime,
TensorRT on the device) and every dataset protocol. Definitions, per query:

- the gallery is ranked by ascending distance; **ties keep gallery order** (the entry with the
  lower gallery index ranks first, exactly the order of a stable sort), so results never depend
  on the sort algorithm;
- with cameras, gallery entries with the query's id AND camera are removed before ranking (the
  Market-1501 / VeRi-776 rule; it also removes the query's own image when it is in the gallery);
- AP = mean over the true matches of the precision at each match's rank;
- INP = (number of true matches) / (rank of the hardest, i.e. last-ranked, true match);
- CMC[k-1] = 1 if the first true match is within rank k, else 0;
- queries with no true match left in the gallery are skipped (counted and logged), and mAP,
  mINP and CMC average over the remaining, *valid* queries.

Example:
    >>> distmat = cosine_distance(query_embeddings, gallery_embeddings)   # (Nq, Ng) float32
    >>> result = evaluate_rank(distmat, q_ids, g_ids, q_cams, g_cams)
    >>> result["mAP"], result["cmc"][0]                                   # mAP, rank-1
"""

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.errors import ConfigError, DatasetError
from cvnet.core.preprocess import l2_normalize

logger = logging.getLogger(__name__)

#: Elements of the distance matrix processed at once; bounds the sort buffer (64 MiB in float32).
CHUNK_ELEMENTS = 1 << 24

#: Keys of :func:`evaluate_rank`'s result that hold one value per valid query (not aggregated
#: over trials: each trial has its own queries).
PER_QUERY_KEYS = ("query_ap", "query_first_rank")

# (max_rank, gallery size) pairs already warned about, so repeated trials warn once.
_WARNED_MAX_RANK = set()


def cosine_distance(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between every query and gallery embedding.

    Args:
        query: (Nq, D) float embeddings, not necessarily normalised.
        gallery: (Ng, D) float embeddings of the same dimension.

    Returns:
        (Nq, Ng) float32 distances in [0, 2]; an all-zero embedding is at distance 1 from all.
    """
    query, gallery = np.asarray(query), np.asarray(gallery)
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ConfigError("cosine_distance expects (Nq, D) and (Ng, D) embeddings of the same D, "
                          "got shapes {} and {}".format(query.shape, gallery.shape))
    query = l2_normalize(query.astype(np.float32))
    gallery = l2_normalize(gallery.astype(np.float32))
    return (1.0 - query.dot(gallery.T)).astype(np.float32)


def evaluate_rank(distmat: np.ndarray, q_ids: Sequence, g_ids: Sequence,
                  q_cams: Optional[Sequence] = None, g_cams: Optional[Sequence] = None,
                  max_rank: int = 50) -> Dict[str, Any]:
    """mAP, mINP and CMC of a query-gallery distance matrix (see the module docstring).

    Vectorised over queries: one sort of each block of rows, then only the same-id entries are
    located in the sorted rows (a binary search), so time is dominated by the sort and memory by
    ``CHUNK_ELEMENTS``. Ties keep gallery order (stable sort).

    Args:
        distmat: (Nq, Ng) distances, smaller = more similar (float32 is the fast path; any real
            dtype works). NaN is an error; +-inf is allowed.
        q_ids: (Nq,) identity of each query, all ints or all strings.
        g_ids: (Ng,) identity of each gallery entry, the same type as ``q_ids``.
        q_cams: (Nq,) camera of each query, or None to apply no camera rule.
        g_cams: (Ng,) camera of each gallery entry; given exactly when ``q_cams`` is.
        max_rank: Length of the returned CMC curve. Beyond the gallery size the curve repeats
            its last value (a warning says so).

    Returns:
        ``{"mAP": float, "mINP": float, "cmc": (max_rank,) float64 array,
        "num_valid_queries": int, "num_skipped_queries": int, "query_ap": (V,) float64,
        "query_first_rank": (V,) int64}``; mAP, mINP and the CMC values are fractions in
        [0, 1], averaged over the V valid queries; ``query_ap`` and ``query_first_rank`` (the
        1-based rank of the first true match) are each valid query's own values, in query
        order, for confidence intervals (:mod:`cvnet.core.confidence`).

    Raises:
        ConfigError: Shapes, lengths, dtypes or ``max_rank`` are invalid.
        DatasetError: No query has a true match in the gallery.
    """
    distmat, q_codes, g_codes, q_cam_codes, g_cam_codes = _validate(
        distmat, q_ids, g_ids, q_cams, g_cams, max_rank)
    num_q, num_g = distmat.shape
    if max_rank > num_g and (max_rank, num_g) not in _WARNED_MAX_RANK:
        _WARNED_MAX_RANK.add((max_rank, num_g))
        logger.warning("max_rank %d exceeds the gallery size %d: CMC beyond rank %d repeats its "
                       "last value", max_rank, num_g, num_g)

    ap = np.zeros(num_q, np.float64)
    inp = np.zeros(num_q, np.float64)
    first_rank = np.zeros(num_q, np.int64)  # 0 marks a query without a true match
    rows_per_chunk = max(1, CHUNK_ELEMENTS // num_g)
    for start in range(0, num_q, rows_per_chunk):
        stop = min(num_q, start + rows_per_chunk)
        cams = None if q_cam_codes is None else (q_cam_codes[start:stop], g_cam_codes)
        _evaluate_chunk(distmat[start:stop], q_codes[start:stop], g_codes, cams,
                        ap[start:stop], inp[start:stop], first_rank[start:stop])

    valid = first_rank > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise DatasetError("no query has a true match in the gallery ({} queries, {} gallery "
                           "entries{}): the query and gallery identities do not overlap; check "
                           "the split or protocol".format(
                               num_q, num_g, ", after removing same-id same-camera entries"
                               if q_cam_codes is not None else ""))
    if num_valid < num_q:
        logger.warning("%d of %d queries have no true match in the gallery%s and were skipped",
                       num_q - num_valid, num_q, " (after removing same-id same-camera entries)"
                       if q_cam_codes is not None else "")
    hits = np.bincount(np.minimum(first_rank[valid], max_rank + 1), minlength=max_rank + 2)
    cmc = np.cumsum(hits[1:max_rank + 1]) / float(num_valid)
    return {"mAP": float(ap[valid].mean()), "mINP": float(inp[valid].mean()), "cmc": cmc,
            "num_valid_queries": num_valid, "num_skipped_queries": num_q - num_valid,
            "query_ap": ap[valid], "query_first_rank": first_rank[valid]}


def summarize_metrics(result: Dict[str, Any], ranks: Sequence[int] = (1, 5, 10)
                      ) -> Dict[str, float]:
    """Flattens an :func:`evaluate_rank` result for reports and JSON.

    Returns:
        ``{"mAP", "mINP", "rank1", "rank5", ... (fractions), "num_valid_queries"}``.
    """
    cmc = np.asarray(result["cmc"])
    summary = {"mAP": float(result["mAP"]), "mINP": float(result["mINP"])}
    for rank in ranks:
        if not 1 <= rank <= len(cmc):
            raise ConfigError("rank {} is outside the CMC curve (ranks 1..{}); evaluate with a "
                              "larger max_rank".format(rank, len(cmc)))
        summary["rank{}".format(rank)] = float(cmc[rank - 1])
    summary["num_valid_queries"] = int(result["num_valid_queries"])
    return summary


def aggregate_trials(results: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Mean and standard deviation of each metric over repeated trials (e.g. VehicleID's 10).

    Args:
        results: Metric dicts with the same keys, from :func:`evaluate_rank` or
            :func:`summarize_metrics`; array values (the CMC) are aggregated element-wise.

    Returns:
        ``{metric: {"mean": value, "std": value}}`` with the population standard deviation
        (ddof=0) over trials; floats for scalar metrics, float64 arrays for the CMC. The
        per-query values (:data:`PER_QUERY_KEYS`) are left out.
    """
    if len(results) == 0:
        raise ConfigError("aggregate_trials got no results; pass one metric dict per trial")
    results = [{k: v for k, v in result.items() if k not in PER_QUERY_KEYS}
               for result in results]
    keys = list(results[0].keys())
    for index, result in enumerate(results[1:], 1):
        if sorted(result.keys()) != sorted(keys):
            raise ConfigError("trial {} has metrics {} but trial 0 has {}; aggregate results of "
                              "the same kind".format(index, sorted(result.keys()), sorted(keys)))
    aggregated = {}
    for key in keys:
        try:
            values = np.stack([np.asarray(result[key], np.float64) for result in results])
        except ValueError as err:
            raise ConfigError("cannot aggregate metric {!r} over trials: {}".format(key, err))
        mean, std = values.mean(axis=0), values.std(axis=0)
        if values.ndim == 1:
            mean, std = float(mean), float(std)
        aggregated[key] = {"mean": mean, "std": std}
    return aggregated


def _evaluate_chunk(dist: np.ndarray, q_codes: np.ndarray, g_codes: np.ndarray,
                    cams: Optional[Tuple[np.ndarray, np.ndarray]], ap: np.ndarray,
                    inp: np.ndarray, first_rank: np.ndarray) -> None:
    """Fills ap, inp and first_rank (views of the outputs) for one block of query rows."""
    rows, cols = np.nonzero(q_codes[:, None] == g_codes[None, :])  # same-id entries
    if len(rows) == 0:
        return
    pos = _stable_positions(dist, rows, cols)
    order = np.lexsort((pos, rows))  # by query, then by rank
    rows, cols, pos = rows[order], cols[order], pos[order]
    if cams is None:
        kept = np.ones(len(rows), bool)
        removed_before = np.zeros(len(rows), np.int64)
    else:
        removed = cams[0][rows] == cams[1][cols]
        kept = ~removed
        removed_before = _segment_cumsum(removed.astype(np.int64), rows)
    rows, rank = rows[kept], pos[kept] + 1 - removed_before[kept]  # 1-based rank after removal
    if len(rows) == 0:
        return
    nth_match = _segment_cumsum(np.ones(len(rows), np.int64), rows)
    num_matches = np.bincount(rows, minlength=len(dist))
    has_match = num_matches > 0
    precision_sum = np.bincount(rows, weights=nth_match / rank.astype(np.float64),
                                minlength=len(dist))
    ap[has_match] = precision_sum[has_match] / num_matches[has_match]
    first = nth_match == 1
    first_rank[rows[first]] = rank[first]
    last = nth_match == num_matches[rows]
    inp[rows[last]] = num_matches[rows[last]] / rank[last].astype(np.float64)


def _stable_positions(dist: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """0-based position of dist[rows, cols] in its row's stable ascending order.

    Position = (entries strictly closer) + (entries at the same distance with a lower index).
    The first term comes from a binary search in the sorted rows; the second is counted
    directly, only for entries that actually share their distance.
    """
    num_g = dist.shape[1]
    sorted_rows = np.sort(dist, axis=1)
    values = dist[rows, cols]
    below = _count_sorted(sorted_rows, rows, values, inclusive=False)
    at_or_below = _count_sorted(sorted_rows, rows, values, inclusive=True)
    tied = np.flatnonzero(at_or_below - below > 1)
    block = max(1, CHUNK_ELEMENTS // num_g)
    for start in range(0, len(tied), block):
        index = tied[start:start + block]
        equal = dist[rows[index]] == values[index, None]
        earlier = np.arange(num_g)[None, :] < cols[index, None]
        below[index] += (equal & earlier).sum(axis=1)
    return below


def _count_sorted(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray,
                  inclusive: bool) -> np.ndarray:
    """Vectorised binary search: per i, how many of sorted_rows[rows[i]] are < (or <=) values[i]."""
    low = np.zeros(len(rows), np.int64)
    high = np.full(len(rows), sorted_rows.shape[1], np.int64)
    active = low < high
    while active.any():
        mid = (low + high) // 2
        probe = sorted_rows[rows, np.minimum(mid, sorted_rows.shape[1] - 1)]
        right = (probe <= values) if inclusive else (probe < values)
        low = np.where(active & right, mid + 1, low)
        high = np.where(active & ~right, mid, high)
        active = low < high
    return low


def _segment_cumsum(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of values restarting at each new value of sorted segments."""
    total = np.cumsum(values)
    starts = np.flatnonzero(np.r_[True, segments[1:] != segments[:-1]])
    before = np.r_[0, total][starts]  # running total just before each segment
    lengths = np.diff(np.r_[starts, len(values)])
    return total - np.repeat(before, lengths)


def _validate(distmat, q_ids, g_ids, q_cams, g_cams, max_rank):
    """Checks evaluate_rank's inputs; returns the matrix and integer codes of ids and cameras."""
    distmat = np.asarray(distmat)
    if distmat.ndim != 2 or 0 in distmat.shape:
        raise ConfigError("distmat must be a non-empty (num_query, num_gallery) matrix, got "
                          "shape {}".format(distmat.shape))
    if distmat.dtype.kind not in "fiu":
        raise ConfigError("distmat must hold real numbers, got dtype {}".format(distmat.dtype))
    if distmat.dtype.kind == "f":
        nans = int(np.isnan(distmat).sum())
        if nans:
            raise ConfigError("distmat has {} NaN distances; check the embeddings for NaN (a "
                              "diverged model or an empty image)".format(nans))
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ConfigError("max_rank must be a positive integer, got {!r}".format(max_rank))
    if (q_cams is None) != (g_cams is None):
        raise ConfigError("give cameras for both query and gallery, or for neither (got q_cams "
                          "{} and g_cams {})".format("set" if q_cams is not None else "None",
                                                     "set" if g_cams is not None else "None"))
    num_q, num_g = distmat.shape
    q_codes, g_codes = _label_codes("q_ids", q_ids, num_q, "g_ids", g_ids, num_g)
    if q_cams is None:
        return distmat, q_codes, g_codes, None, None
    q_cam_codes, g_cam_codes = _label_codes("q_cams", q_cams, num_q, "g_cams", g_cams, num_g)
    return distmat, q_codes, g_codes, q_cam_codes, g_cam_codes


def _label_codes(q_name: str, q_labels: Sequence, num_q: int, g_name: str, g_labels: Sequence,
                 num_g: int) -> List[np.ndarray]:
    """Integer codes of query and gallery labels (equal labels -> equal codes)."""
    arrays = []
    for name, labels, expected in ((q_name, q_labels, num_q), (g_name, g_labels, num_g)):
        array = np.asarray(labels)
        if array.ndim != 1 or len(array) != expected:
            raise ConfigError("{} must be a 1-D sequence of length {} (distmat is {} x {}), got "
                              "shape {}".format(name, expected, num_q, num_g, array.shape))
        arrays.append(array)
    kinds = [{"i": "number", "u": "number", "f": "number", "U": "str", "S": "bytes"}.get(
        array.dtype.kind) for array in arrays]
    if None in kinds or kinds[0] != kinds[1]:
        raise ConfigError("{} and {} must both be integers or both be strings, got dtypes {} and "
                          "{}".format(q_name, g_name, arrays[0].dtype, arrays[1].dtype))
    _, codes = np.unique(np.concatenate(arrays), return_inverse=True)
    return [codes[:num_q], codes[num_q:]]
