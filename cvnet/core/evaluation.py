"""Retrieval evaluation of any embedder on a dataset's protocols (torch-free, Python 3.6).

An *embedder* is any callable taking a list of decoded (H, W, 3) uint8 BGR images and returning
(N, D) float32 embeddings: a PyTorch model (``cvnet.models.runner.TorchEmbedder``), an ONNX
Runtime session or a TensorRT engine. Every image of every protocol is embedded once; unreadable
images are reported and left out, never fatal.
"""

import logging
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.datasets import Dataset, QueryGallery, evaluation_splits, standard_protocols
from cvnet.core.metrics import aggregate_trials, cosine_distance, evaluate_rank, summarize_metrics
from cvnet.core.preprocess import ImageDecodeError, decode_image
from cvnet.core.visualize import ranked_list_row, stack_rows

logger = logging.getLogger(__name__)

Embedder = Callable[[List[np.ndarray]], np.ndarray]
_LOG_EVERY_S = 10.0


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
            each metric is the mean and ``<metric>_std`` its standard deviation.
        failed: (path, reason) of images left out because they could not be decoded.
        seconds: Wall time of embedding and ranking.
        embedded: The embeddings of every evaluated image (for pictures, no re-embedding).
    """

    metrics: Dict[str, Dict[str, float]]
    failed: List[Tuple[str, str]]
    seconds: float
    embedded: Optional[EmbeddedImages] = None


def embed_paths(embed: Embedder, paths: Sequence[str], *, batch_size: int = 64) -> EmbeddedImages:
    """Decodes and embeds image files in batches, skipping the ones that do not decode."""
    rows, row_of, failed = [], {}, []
    last_log, started = time.monotonic(), time.monotonic()
    for start in range(0, len(paths), batch_size):
        images, kept = [], []
        for path in paths[start:start + batch_size]:
            try:
                images.append(decode_image(path))
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
        if time.monotonic() - last_log > _LOG_EVERY_S:
            last_log = time.monotonic()
            done = min(start + batch_size, len(paths))
            logger.info("embedded %d/%d images (%.1f img/s)", done, len(paths),
                        done / (last_log - started))
    if failed:
        logger.warning("%d of %d images could not be decoded and were left out (first: %s)",
                       len(failed), len(paths), failed[0][1])
    if not rows:
        raise ValueError("none of the {} images could be decoded".format(len(paths)))
    return EmbeddedImages(np.stack(rows), row_of, failed)


def _usable(split: QueryGallery, embedded: EmbeddedImages) -> QueryGallery:
    return QueryGallery([r for r in split.query if r.path in embedded.row_of],
                        [r for r in split.gallery if r.path in embedded.row_of])


def _split_distances(split: QueryGallery, embedded: EmbeddedImages) -> np.ndarray:
    query = embedded.embeddings[[embedded.row_of[r.path] for r in split.query]]
    gallery = embedded.embeddings[[embedded.row_of[r.path] for r in split.gallery]]
    return cosine_distance(query, gallery)  # (Nq, Ng)


def evaluate_split(split: QueryGallery, embedded: EmbeddedImages, *,
                   max_rank: int = 50) -> Dict[str, float]:
    """mAP, mINP, Rank-1/5/10 and counts of one query/gallery split."""
    split = _usable(split, embedded)
    if not split.query or not split.gallery:
        raise ValueError("no decodable query or gallery images left to evaluate")
    max_rank = min(max_rank, len(split.gallery))  # a longer CMC would only repeat itself
    result = evaluate_rank(_split_distances(split, embedded), max_rank=max_rank,
                           **split.rank_labels())
    summary = summarize_metrics(result, ranks=[r for r in (1, 5, 10) if r <= max_rank])
    summary.update(num_query=len(split.query), num_gallery=len(split.gallery))
    return summary


def evaluate(embed: Embedder, dataset: Dataset, protocols: Optional[Sequence[str]] = None, *,
             trials: int = 10, seed: int = 0, batch_size: int = 64,
             max_rank: int = 50) -> EvaluationReport:
    """Evaluates an embedder on a dataset.

    Args:
        embed: Images -> embeddings (see the module docstring).
        dataset: From :func:`cvnet.core.datasets.load_dataset`.
        protocols: e.g. ``["A2G", "G2A"]``; the dataset's standard ones when None.
        trials: VehicleID's number of random gallery draws (mean and std are reported).
        seed: Seed of the first VehicleID draw.
        batch_size: Images per embedder call.
        max_rank: Length of the CMC curve.
    """
    started = time.monotonic()
    protocols = list(protocols or standard_protocols(dataset))
    splits = {p: evaluation_splits(dataset, p, trials=trials, seed=seed) for p in protocols}
    paths = sorted({r.path for qgs in splits.values() for qg in qgs
                    for r in qg.query + qg.gallery})
    embedded = embed_paths(embed, paths, batch_size=batch_size)
    metrics = {}
    for protocol, qgs in splits.items():
        results = [evaluate_split(qg, embedded, max_rank=max_rank) for qg in qgs]
        if len(results) == 1:
            metrics[protocol] = results[0]
        else:
            aggregated = aggregate_trials(results)
            metrics[protocol] = {}
            for key, value in aggregated.items():
                metrics[protocol][key] = float(value["mean"])
                metrics[protocol][key + "_std"] = float(value["std"])
    return EvaluationReport(metrics, embedded.failed, time.monotonic() - started, embedded)


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
    sub = QueryGallery(picked, split.gallery)
    distances = _split_distances(sub, embedded)
    rows = []
    for q, query in enumerate(sub.query):
        order = np.argsort(distances[q], kind="stable")[:topk]
        matches = [sub.gallery[g] for g in order]
        rows.append(ranked_list_row(
            decode_image(query.path), [decode_image(m.path) for m in matches],
            correct=[m.vehicle_id == query.vehicle_id for m in matches],
            labels=["{:.2f}".format(distances[q, g]) for g in order]))
    return stack_rows(rows)


def format_report(report: EvaluationReport, title: str = "") -> str:
    """A Markdown table of the report: one row per protocol, metrics in percent."""
    lines = ["## " + title, ""] if title else []
    lines += ["| protocol | mAP | Rank-1 | Rank-5 | Rank-10 | mINP | queries | gallery |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for protocol, m in report.metrics.items():
        def pct(key: str) -> str:
            if key not in m:
                return "-"
            std = m.get(key + "_std")
            return "{:.1f}".format(100 * m[key]) + (" +- {:.1f}".format(100 * std)
                                                    if std is not None else "")
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            protocol, pct("mAP"), pct("rank1"), pct("rank5"), pct("rank10"), pct("mINP"),
            int(m["num_query"]), int(m["num_gallery"])))
    if report.failed:
        lines += ["", "{} images could not be decoded and were left out.".format(
            len(report.failed))]
    return "\n".join(lines)


def jsonable(report: EvaluationReport) -> Dict[str, Any]:
    """The report as JSON types (for ``--json``)."""
    return {"metrics": report.metrics, "failed": [list(f) for f in report.failed],
            "seconds": report.seconds}
