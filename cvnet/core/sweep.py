"""Degradation sweeps: accuracy as crops get smaller, blurrier and more compressed (Python 3.6).

``cvnet-eval --sweep scale,blur,jpeg`` re-evaluates every protocol with its **queries**
degraded (:mod:`cvnet.core.degrade`) and the gallery clean: the gallery is the enrolled,
reference side; the query is the crop a drone or a camera has just taken. The clean evaluation's
embeddings are reused (every gallery image and the clean row are embedded once), so each level
costs one pass over the query images. VehicleID is swept on its first seeded gallery draw.

The number a detector's minimum-box setting needs is :func:`smallest_side`: the smallest crop
side at which Rank-1 stays within ``ratio`` (90%) of its clean value, at that side and every
larger one, per direction.

Example:
    >>> result = run_sweep(embed, dataset, ["A2G", "G2A"], clean_report.embedded, ["scale"])
    >>> result["min_side"]                         # {"A2G": 32, "G2A": 48}
    >>> print(format_sweep(result))
"""

import logging
from typing import Any, Dict, List, Optional, Sequence

from cvnet.core.datasets import Dataset, evaluation_splits
from cvnet.core.degrade import DEFAULT_LEVELS, KINDS, UNITS, degradation
from cvnet.core.errors import ConfigError
from cvnet.core.evaluation import EmbeddedImages, Embedder, embed_paths, evaluate_split
from cvnet.core.progress import progress_bar

logger = logging.getLogger(__name__)

#: Rank-1 must stay within this fraction of its clean value (:func:`smallest_side`).
KEEP_RATIO = 0.9
#: The metrics a sweep records per protocol and level.
METRICS = ("mAP", "rank1")


def parse_kinds(text: str) -> List[str]:
    """``"scale,blur"`` -> ``["scale", "blur"]`` (in :data:`KINDS` order).

    Raises:
        ConfigError: An unknown kind.
    """
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ConfigError("unknown sweep {!r}; expected a comma-separated list of {}".format(
            ",".join(unknown) or text, ", ".join(KINDS)))
    return [kind for kind in KINDS if kind in kinds]


def run_sweep(embed: Embedder, dataset: Dataset, protocols: Sequence[str],
              clean: EmbeddedImages, kinds: Sequence[str], *, seed: int = 0,
              batch_size: int = 64, max_rank: int = 50,
              levels: Optional[Dict[str, Sequence[int]]] = None) -> Dict[str, Any]:
    """Evaluates every protocol with its queries degraded at each level of each kind.

    Args:
        embed: Images -> embeddings (the evaluated model).
        dataset: The evaluated dataset.
        protocols: Its protocols (``A2G``, ``G2A``...).
        clean: The clean evaluation's embeddings (``EvaluationReport.embedded``): the gallery
            and the clean row come from them.
        kinds: Degradations to sweep, from :data:`KINDS`.
        seed: Seed of the degradations (blur angles) and of VehicleID's draw.
        batch_size: Images per embedder call.
        max_rank: Length of the CMC curve.
        levels: Levels per kind (default :data:`DEFAULT_LEVELS`).

    Returns:
        JSON types: ``{"kinds", "seed", "degraded": "queries", "keep_ratio", "units",
        "clean": {protocol: {"mAP", "rank1"}}, "rows": [{"kind", "level", "protocol", "mAP",
        "rank1", "rank1_ratio"}], "min_side": {protocol: px or None}}`` (``min_side`` when
        ``scale`` was swept).
    """
    levels = dict(DEFAULT_LEVELS, **(levels or {}))
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError("unknown sweep {!r}; expected one of {}".format(kind, KINDS))
        for level in levels[kind]:
            degradation(kind, level, seed)  # refuses a bad level before any work
    splits = {p: evaluation_splits(dataset, p, trials=1, seed=seed)[0] for p in protocols}
    query_paths = sorted({r.path for split in splits.values() for r in split.query
                          if r.path in clean.row_of})
    cleaned = {p: _pick(evaluate_split(split, clean, max_rank=max_rank))
               for p, split in splits.items()}
    steps = sum(len(levels[kind]) for kind in kinds)
    progress = progress_bar(steps * len(query_paths), "sweep", logger, label="images",
                            interval=10.0)
    rows = []
    try:
        for kind in kinds:
            for level in levels[kind]:
                degraded = embed_paths(embed, query_paths, batch_size=batch_size,
                                       transform=degradation(kind, level, seed))
                progress.update(len(query_paths))
                for protocol, split in splits.items():
                    metrics = _pick(evaluate_split(split, clean, max_rank=max_rank,
                                                   query_embedded=degraded))
                    base = cleaned[protocol]["rank1"]
                    rows.append(dict(kind=kind, level=int(level), protocol=protocol,
                                     rank1_ratio=metrics["rank1"] / base if base else None,
                                     **metrics))
                logger.info("sweep %s %s: %s", kind, level, ", ".join(
                    "{} Rank-1 {:.1f}%".format(r["protocol"], 100 * r["rank1"])
                    for r in rows[-len(splits):]))
    finally:
        progress.close()
    result = {"kinds": list(kinds), "seed": seed, "degraded": "queries",
              "keep_ratio": KEEP_RATIO, "units": {kind: UNITS[kind] for kind in kinds},
              "levels": {kind: [int(level) for level in levels[kind]] for kind in kinds},
              "clean": cleaned, "rows": rows}
    if "scale" in kinds:
        result["min_side"] = {p: smallest_side(rows, p, cleaned[p]["rank1"])
                              for p in protocols}
    return result


def _pick(metrics: Dict[str, Any]) -> Dict[str, float]:
    return {name: float(metrics[name]) for name in METRICS}


def smallest_side(rows: Sequence[Dict[str, Any]], protocol: str, clean_rank1: float,
                  ratio: float = KEEP_RATIO) -> Optional[int]:
    """The smallest crop side at which Rank-1 stays >= ``ratio`` x clean, there and at every
    larger side swept; None when even the largest side falls below."""
    scale = sorted(((r["level"], r["rank1"]) for r in rows
                    if r["kind"] == "scale" and r["protocol"] == protocol), reverse=True)
    best = None
    for side, rank1 in scale:
        if rank1 < ratio * clean_rank1:
            break
        best = side
    return best


def format_sweep(result: Dict[str, Any]) -> str:
    """The sweep as Markdown: Rank-1 (mAP) per level and protocol, then the smallest side."""
    protocols = list(result["clean"])
    head = "| degradation | level |" + "".join(" {} Rank-1 (mAP) |".format(p) for p in protocols)
    lines = ["### Degradation sweep (queries degraded, gallery clean; seed {})".format(
        result["seed"]), "", head, "|---|---:|" + "---:|" * len(protocols)]
    lines.append("| clean | - |" + "".join(" {:.1f} ({:.1f}) |".format(
        100 * result["clean"][p]["rank1"], 100 * result["clean"][p]["mAP"]) for p in protocols))
    by_level = {}  # type: Dict[Any, Dict[str, Dict[str, Any]]]
    for row in result["rows"]:
        by_level.setdefault((row["kind"], row["level"]), {})[row["protocol"]] = row
    for kind in result["kinds"]:
        for level in result["levels"][kind]:
            cells = by_level[(kind, level)]
            lines.append("| {} ({}) | {} |".format(kind, result["units"][kind], level) + "".join(
                " {:.1f} ({:.1f}) |".format(100 * cells[p]["rank1"], 100 * cells[p]["mAP"])
                for p in protocols))
    if "min_side" in result:
        lines += ["", "Smallest crop side with Rank-1 within {:.0f}% of clean (there and at "
                      "every larger side): {}.".format(
                          100 * result["keep_ratio"], ", ".join(
                              "{} {}".format(p, "{} px".format(side) if side is not None
                                             else "none of the sides swept")
                              for p, side in result["min_side"].items()))]
    return "\n".join(lines)
