"""Retrieval evaluation of any embedder on a dataset's protocols (torch-free, Python 3.6).

An *embedder* is any callable taking a list of decoded (H, W, 3) uint8 BGR images and returning
(N, D) float32 embeddings: a PyTorch model (``cvnet.models.runner.TorchEmbedder``), an ONNX
Runtime session or a TensorRT engine. Every image of every protocol is embedded once; unreadable
images are reported and left out, never fatal.

On request a report also carries, per protocol, 95% bootstrap intervals of mAP and Rank-1
(resampling queries, :mod:`cvnet.core.confidence`; VehicleID's seeded trials report their mean
+- std instead) and the open-set operating points of its query x gallery pairs (ROC, EER, TPR at
target false-positive rates and their similarity thresholds, :mod:`cvnet.core.operating_points`).
"""

import logging
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.confidence import UNIT as CI_UNIT, query_intervals
from cvnet.core.datasets import Dataset, QueryGallery, evaluation_splits, standard_protocols
from cvnet.core.errors import ConfigError
from cvnet.core.metrics import aggregate_trials, cosine_distance, evaluate_rank, summarize_metrics
from cvnet.core.operating_points import format_fpr, operating_points, pair_scores
from cvnet.core.preprocess import ImageDecodeError, decode_image
from cvnet.core.progress import Progress
from cvnet.core.visualize import ranked_list_row, stack_rows

logger = logging.getLogger(__name__)

Embedder = Callable[[List[np.ndarray]], np.ndarray]
#: A change made to each decoded image before embedding: (image, path) -> image.
Transform = Callable[[np.ndarray, str], np.ndarray]
_LOG_EVERY_S = 10.0
#: Metrics that get a bootstrap interval (``<metric>_ci95`` in a report's metrics).
CI_METRICS = ("mAP", "rank1")


class EmbeddedImages(NamedTuple):
    """Embeddings of a set of image files.

    Attributes:
        embeddings: (N, D) float32, one row per decodable file, not normalised.
        row_of: Path -> row of ``embeddings``.
        failed: (path, reason) of each file that could not be decoded.
    """

    embeddings: np.ndarray
    row_of: Dict[str, int]
    failed: List[Tuple[str, str]]


class EvaluationReport(NamedTuple):
    """What :func:`evaluate` found.

    Attributes:
        metrics: Protocol -> ``{"mAP", "mINP", "rank1", "rank5", "rank10", "num_valid_queries",
            "num_query", "num_gallery"}`` (fractions in [0, 1]); with several trials (VehicleID)
            each metric is the mean and ``<metric>_std`` its standard deviation; with a
            bootstrap, ``mAP_ci95`` and ``rank1_ci95`` are the intervals ``[low, high]``.
        failed: (path, reason) of images left out because they could not be decoded.
        seconds: Wall time of embedding and ranking.
        embedded: The embeddings of every evaluated image (for pictures, no re-embedding).
        operating_points: Protocol -> :func:`cvnet.core.operating_points.operating_points`
            summary (of the first trial for VehicleID), when asked for.
        settings: How the extras were computed: ``{"bootstrap": {"resamples", "seed",
            "level"}, "fprs": [...]}`` (the keys of what was asked for).
    """

    metrics: Dict[str, Dict[str, Any]]
    failed: List[Tuple[str, str]]
    seconds: float
    embedded: Optional[EmbeddedImages] = None
    operating_points: Optional[Dict[str, Dict[str, Any]]] = None
    settings: Optional[Dict[str, Any]] = None


def embed_paths(embed: Embedder, paths: Sequence[str], *, batch_size: int = 64,
                transform: Optional[Transform] = None) -> EmbeddedImages:
    """Decodes and embeds image files in batches, skipping the ones that do not decode.

    Args:
        embed: Images -> embeddings.
        paths: Image files.
        batch_size: Images per ``embed`` call.
        transform: Applied to each decoded image before embedding (a degradation sweep's).
    """
    rows, row_of, failed = [], {}, []
    progress = Progress(len(paths), logger, label="images", interval=_LOG_EVERY_S,
                        desc="embedding")
    for start in range(0, len(paths), batch_size):
        images, kept = [], []
        batch = paths[start:start + batch_size]
        for path in batch:
            try:
                image = decode_image(path)
                images.append(image if transform is None else transform(image, path))
                kept.append(path)
            except ImageDecodeError as err:
                failed.append((path, str(err)))
        if images:
            embeddings = np.asarray(embed(images), np.float32)
            if embeddings.shape[0] != len(images):
                raise ValueError("the embedder returned {} rows for {} images".format(
                    embeddings.shape[0], len(images)))
            for path, row in zip(kept, embeddings):
                row_of[path] = len(rows)
                rows.append(row)
        progress.update(len(batch))
    if failed:
        logger.warning("%d of %d images could not be decoded and were left out (first: %s)",
                       len(failed), len(paths), failed[0][1])
    if not rows:
        raise ValueError("none of the {} images could be decoded".format(len(paths)))
    return EmbeddedImages(np.stack(rows), row_of, failed)


def _usable(split: QueryGallery, embedded: EmbeddedImages,
            query_embedded: Optional[EmbeddedImages] = None) -> QueryGallery:
    queries = embedded if query_embedded is None else query_embedded
    return QueryGallery([r for r in split.query if r.path in queries.row_of],
                        [r for r in split.gallery if r.path in embedded.row_of])


def split_distances(split: QueryGallery, embedded: EmbeddedImages,
                    query_embedded: Optional[EmbeddedImages] = None
                    ) -> Tuple[QueryGallery, np.ndarray]:
    """The split's decodable records and their (Nq, Ng) float32 cosine distances.

    Args:
        split: A protocol's query and gallery records.
        embedded: Embeddings of the gallery (and of the queries, unless ``query_embedded``).
        query_embedded: Other embeddings of the queries (e.g. of degraded copies).

    Raises:
        ValueError: No decodable query or gallery image is left.
    """
    queries = embedded if query_embedded is None else query_embedded
    split = _usable(split, embedded, query_embedded)
    if not split.query or not split.gallery:
        raise ValueError("no decodable query or gallery images left to evaluate")
    query = queries.embeddings[[queries.row_of[r.path] for r in split.query]]
    gallery = embedded.embeddings[[embedded.row_of[r.path] for r in split.gallery]]
    return split, cosine_distance(query, gallery)


def split_metrics(split: QueryGallery, distmat: np.ndarray, *, max_rank: int = 50,
                  bootstrap: int = 0, seed: int = 0) -> Dict[str, Any]:
    """mAP, mINP, Rank-1/5/10, counts and (``bootstrap`` > 0) intervals of one scored split.

    Args:
        split: The records ``distmat`` scores (from :func:`split_distances`).
        distmat: (Nq, Ng) distances.
        max_rank: Length of the CMC curve.
        bootstrap: Resamples of the queries for ``mAP_ci95`` / ``rank1_ci95``; 0 for none.
        seed: Seed of the resamples.
    """
    max_rank = min(max_rank, len(split.gallery))  # a longer CMC would only repeat itself
    result = evaluate_rank(distmat, max_rank=max_rank, **split.rank_labels())
    summary = summarize_metrics(result, ranks=[r for r in (1, 5, 10) if r <= max_rank])
    summary.update(num_query=len(split.query), num_gallery=len(split.gallery))
    if bootstrap:
        for name, interval in query_intervals(result, resamples=bootstrap, seed=seed,
                                              metrics=CI_METRICS).items():
            summary[name + "_ci95"] = list(interval)
    return summary


def evaluate_split(split: QueryGallery, embedded: EmbeddedImages, *, max_rank: int = 50,
                   query_embedded: Optional[EmbeddedImages] = None, bootstrap: int = 0,
                   seed: int = 0) -> Dict[str, Any]:
    """mAP, mINP, Rank-1/5/10 and counts of one query/gallery split (see
    :func:`split_metrics`); the queries come from ``query_embedded`` when given."""
    split, distmat = split_distances(split, embedded, query_embedded)
    return split_metrics(split, distmat, max_rank=max_rank, bootstrap=bootstrap, seed=seed)


def evaluate(embed: Embedder, dataset: Dataset, protocols: Optional[Sequence[str]] = None, *,
             trials: int = 10, seed: int = 0, batch_size: int = 64, max_rank: int = 50,
             bootstrap: int = 0, bootstrap_seed: int = 0,
             fprs: Optional[Sequence[float]] = None) -> EvaluationReport:
    """Evaluates an embedder on a dataset.

    Args:
        embed: Images -> embeddings (see the module docstring).
        dataset: From :func:`cvnet.core.datasets.load_dataset`.
        protocols: e.g. ``["A2G", "G2A"]``; the dataset's standard ones when None.
        trials: VehicleID's number of random gallery draws (mean and std are reported).
        seed: Seed of the first VehicleID draw.
        batch_size: Images per embedder call.
        max_rank: Length of the CMC curve.
        bootstrap: Resamples of the queries for 95% intervals of mAP and Rank-1 (0: none;
            protocols with several trials report mean +- std instead).
        bootstrap_seed: Seed of the resamples.
        fprs: Target false-positive rates of the operating points; None computes none.
    """
    started = time.monotonic()
    protocols = list(protocols or standard_protocols(dataset))
    splits = {p: evaluation_splits(dataset, p, trials=trials, seed=seed) for p in protocols}
    paths = sorted({r.path for qgs in splits.values() for qg in qgs
                    for r in qg.query + qg.gallery})
    embedded = embed_paths(embed, paths, batch_size=batch_size)
    metrics, points = {}, {}
    for protocol, qgs in splits.items():
        trial_metrics = []
        # One (Nq, Ng) matrix alive at a time: VehicleID's 10 draws at once are ~1.7 GB.
        for trial, qg in enumerate(qgs):
            split, distmat = split_distances(qg, embedded)
            if trial == 0 and fprs is not None:
                try:
                    points[protocol] = operating_points(
                        pair_scores(distmat, **split.rank_labels()), fprs)
                except ConfigError as err:  # one identity only: no negatives
                    logger.warning("protocol %s has no operating points: %s", protocol, err)
            trial_metrics.append(split_metrics(split, distmat, max_rank=max_rank,
                                               bootstrap=bootstrap if len(qgs) == 1 else 0,
                                               seed=bootstrap_seed))
            del split, distmat
        if len(trial_metrics) == 1:
            metrics[protocol] = trial_metrics[0]
            continue
        metrics[protocol] = {}
        for key, value in aggregate_trials(trial_metrics).items():
            metrics[protocol][key] = float(value["mean"])
            metrics[protocol][key + "_std"] = float(value["std"])
    settings = {}  # type: Dict[str, Any]
    if bootstrap:
        settings["bootstrap"] = {"resamples": bootstrap, "seed": bootstrap_seed, "level": 0.95,
                                 "unit": CI_UNIT}
    if fprs is not None:
        settings["fprs"] = [float(f) for f in fprs]
    return EvaluationReport(metrics, embedded.failed, time.monotonic() - started, embedded,
                            points if fprs is not None else None, settings)


def ranked_lists_image(embedded: EmbeddedImages, split: QueryGallery, *, num_queries: int = 8,
                       topk: int = 5, seed: int = 0) -> np.ndarray:
    """The paper's Figure 6 for a split: random queries and their top-k gallery matches.

    Borders are green where the match has the query's identity and red where not.

    Args:
        embedded: Embeddings of the split's images (e.g. ``EvaluationReport.embedded``).
        split: The query/gallery split to draw from.
        num_queries: Rows of the picture (queries drawn at random with ``seed``).
        topk: Matches per query.
        seed: Seed of the query draw.

    Returns:
        (H, W, 3) uint8 BGR picture, one row per query.
    """
    split = _usable(split, embedded)
    rng = np.random.RandomState(seed)
    count = min(num_queries, len(split.query))
    picked = [split.query[i] for i in sorted(rng.choice(len(split.query), count, replace=False))]
    sub, distances = split_distances(QueryGallery(picked, split.gallery), embedded)
    rows = []
    for q, query in enumerate(sub.query):
        order = np.argsort(distances[q], kind="stable")[:topk]
        matches = [sub.gallery[g] for g in order]
        rows.append(ranked_list_row(
            decode_image(query.path), [decode_image(m.path) for m in matches],
            correct=[m.vehicle_id == query.vehicle_id for m in matches],
            labels=["{:.2f}".format(distances[q, g]) for g in order]))
    return stack_rows(rows)


def _percent(metrics: Dict[str, Any], key: str) -> str:
    """``41.2 [39.0, 43.5]`` (a bootstrap interval), ``41.2 +- 1.3`` (trials) or ``41.2``."""
    if key not in metrics:
        return "-"
    text = "{:.1f}".format(100 * metrics[key])
    if metrics.get(key + "_ci95") is not None:
        low, high = metrics[key + "_ci95"]
        return text + " [{:.1f}, {:.1f}]".format(100 * low, 100 * high)
    if metrics.get(key + "_std") is not None:
        return text + " +- {:.1f}".format(100 * metrics[key + "_std"])
    return text


def format_report(report: EvaluationReport, title: str = "") -> str:
    """Markdown tables of the report: metrics in percent per protocol, then the operating
    points when they were computed."""
    lines = ["## " + title, ""] if title else []
    lines += ["| protocol | mAP | Rank-1 | Rank-5 | Rank-10 | mINP | queries | gallery |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for protocol, m in report.metrics.items():
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            protocol, _percent(m, "mAP"), _percent(m, "rank1"), _percent(m, "rank5"),
            _percent(m, "rank10"), _percent(m, "mINP"), int(m["num_query"]),
            int(m["num_gallery"])))
    bootstrap = (report.settings or {}).get("bootstrap")
    notes = []
    if bootstrap:
        notes.append("[low, high]: 95% bootstrap interval over vehicles, all queries of each "
                     "({} resamples, seed {})".format(bootstrap["resamples"], bootstrap["seed"]))
    if any(key.endswith("_std") for m in report.metrics.values() for key in m):
        notes.append("+- : standard deviation over the seeded gallery draws")
    if notes:
        lines += ["", "; ".join(notes) + "."]
    if report.operating_points:
        lines += ["", format_operating_points(report.operating_points)]
    if report.failed:
        lines += ["", "{} images could not be decoded and were left out.".format(
            len(report.failed))]
    return "\n".join(lines)


def format_operating_points(points: Dict[str, Dict[str, Any]]) -> str:
    """Markdown table of :attr:`EvaluationReport.operating_points` (rates in percent)."""
    fprs = [p["fpr_target"] for p in next(iter(points.values()))["points"]]
    head = "| protocol | positives | negatives | EER | AUC |" + "".join(
        " TPR @ FPR {} (threshold) |".format(format_fpr(f)) for f in fprs)
    lines = ["### Operating points (match when cosine similarity >= threshold)", "", head,
             "|---|---:|---:|---:|---:|" + "---:|" * len(fprs)]
    unresolved = False
    for protocol, summary in points.items():
        cells = []
        for point in summary["points"]:
            mark = "" if point["resolved"] else "*"
            unresolved = unresolved or not point["resolved"]
            cells.append("{:.1f}{} ({:.6f})".format(100 * point["tpr"], mark,
                                                    point["threshold"]))
        lines.append("| {} | {} | {} | {:.2f} | {:.4f} | {} |".format(
            protocol, summary["positives"], summary["negatives"], 100 * summary["eer"],
            summary["auc"], " | ".join(cells)))
    exclusions = sorted({summary["exclusion"] for summary in points.values()})
    lines += ["", "Pairs left out: {}.".format("; ".join(exclusions))]
    if unresolved:
        lines.append("*: too few negative pairs to resolve this FPR (it needs at least "
                     "1/FPR); the threshold is the strictest one and accepts no negative.")
    return "\n".join(lines)


def jsonable(report: EvaluationReport) -> Dict[str, Any]:
    """The report as JSON types (for ``--json-out``)."""
    data = {"metrics": report.metrics, "failed": [list(f) for f in report.failed],
            "seconds": report.seconds}
    if report.operating_points is not None:
        data["operating_points"] = report.operating_points
    if report.settings:
        data["settings"] = report.settings
    return data
