"""``cvnet-eval --plots DIR``: the ROC, the score histograms and the degradation sweep as PNGs.

matplotlib is optional (``pip install cvnet[plot]``; the device image has none): it is
imported only here, only when plots are asked for, and a missing one is refused with the
install line before any evaluation runs (:func:`require_matplotlib`). Files are written
atomically (:mod:`cvnet.core.fileio`):

- ``roc.png``: TPR against FPR (log scale) per protocol, the operating points marked;
- ``scores.png``: per protocol, histograms of positive and negative pair similarities with the
  thresholds of the operating points;
- ``sweep.png``: Rank-1 against each degradation's level per protocol, with 90% of the clean
  value dashed (only after ``--sweep``).
"""

import os
from typing import Any, Dict, List, Optional

import numpy as np

from cvnet.core.fileio import atomic_path, make_folders
from cvnet.core.operating_points import PairScores, format_fpr, roc_curve
from cvnet.engines.deps import require

#: Most points drawn per ROC curve (the curve of millions of pairs is thinned on a log grid).
MAX_CURVE_POINTS = 4000


#: What to do where matplotlib is missing, for cvnet-eval --plots.
_EVAL_FIX = ("pip install matplotlib (or cvnet[plot]); on the device, copy the evaluation's "
             "--json-out / --dist-out to a machine with matplotlib instead")


def require_matplotlib(purpose: str = "cvnet-eval --plots", fix: Optional[str] = _EVAL_FIX
                       ) -> Any:
    """matplotlib's pyplot on the Agg backend, or an error naming ``purpose`` and ``fix``
    (None: the install line of :func:`cvnet.engines.deps.require`)."""
    require("matplotlib", purpose, fix)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(plt: Any, figure: Any, path: str, dpi: int = 110) -> str:
    """Lays ``figure`` out, writes it to ``path`` as PNG atomically and closes it."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    plt.close(figure)
    return path


def _thinned(fpr: np.ndarray, tpr: np.ndarray):
    if len(fpr) <= MAX_CURVE_POINTS:
        return fpr, tpr
    grid = np.r_[0.0, np.logspace(-7, 0, MAX_CURVE_POINTS)]
    keep = np.unique(np.r_[np.searchsorted(fpr, grid, side="right") - 1, len(fpr) - 1])
    return fpr[keep], tpr[keep]


def roc_plot(path: str, pairs: Dict[str, PairScores], points: Dict[str, Dict[str, Any]]) -> str:
    """``roc.png``: one curve per protocol, the operating points as dots."""
    plt = require_matplotlib()
    figure, axes = plt.subplots(figsize=(6.5, 5))
    for protocol, scores in pairs.items():
        roc = roc_curve(scores.positives, scores.negatives)
        fpr, tpr = _thinned(roc.fpr, roc.tpr)
        floor = 0.5 / roc.num_negatives  # FPR 0 drawn at half a negative
        line, = axes.plot(np.maximum(fpr, floor), tpr, label="{} (EER {:.1f}%)".format(
            protocol, 100 * points[protocol]["eer"]))
        chosen = [p for p in points[protocol]["points"] if p["resolved"]]
        axes.scatter([max(p["fpr"], floor) for p in chosen], [p["tpr"] for p in chosen],
                     color=line.get_color(), s=18, zorder=3)
    chance = np.logspace(-7, 0, 200)
    axes.plot(chance, chance, color="grey", linestyle=":", linewidth=0.8, label="chance")
    axes.set_xlim(left=0.5 / max(len(scores.negatives) for scores in pairs.values()))
    axes.set_xscale("log")
    axes.set_xlabel("false-positive rate (log scale)")
    axes.set_ylabel("true-positive rate")
    axes.set_ylim(0, 1.02)
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title("ROC of same-vehicle decisions (dots: resolved operating points)")
    axes.legend(fontsize=8, loc="lower right")
    return save_png(plt, figure, path)


def score_histograms(path: str, pairs: Dict[str, PairScores],
                     points: Dict[str, Dict[str, Any]]) -> str:
    """``scores.png``: positive and negative similarity histograms, thresholds as lines."""
    plt = require_matplotlib()
    figure, axes = plt.subplots(len(pairs), 1, figsize=(6.5, 2.8 * len(pairs)), squeeze=False)
    for row, (protocol, scores) in enumerate(pairs.items()):
        ax = axes[row][0]
        both = np.r_[scores.positives, scores.negatives]
        bins = np.linspace(both.min(), max(both.max(), both.min() + 1e-6), 81)
        ax.hist(scores.negatives, bins=bins, density=True, alpha=0.5,
                label="different vehicles ({})".format(len(scores.negatives)))
        ax.hist(scores.positives, bins=bins, density=True, alpha=0.5,
                label="same vehicle ({})".format(len(scores.positives)))
        top = ax.get_ylim()[1]
        for number, point in enumerate(points[protocol]["points"]):
            ax.axvline(point["threshold"], color="k", linestyle=":" if not point["resolved"]
                       else "--", linewidth=0.8)
            ax.annotate("FPR {}".format(format_fpr(point["fpr_target"])),
                        (point["threshold"], top * (0.92 - 0.12 * number)), fontsize=7,
                        ha="right")
        ax.set_title("{}: cosine similarity of query x gallery pairs".format(protocol),
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1][0].set_xlabel("cosine similarity (dashed: thresholds; dotted: unresolved)")
    return save_png(plt, figure, path)


def sweep_plot(path: str, sweep: Dict[str, Any]) -> str:
    """``sweep.png``: Rank-1 against the level of each swept degradation."""
    plt = require_matplotlib()
    kinds = sweep["kinds"]
    figure, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.8), squeeze=False)
    for column, kind in enumerate(kinds):
        ax = axes[0][column]
        for protocol, clean in sweep["clean"].items():
            rows = sorted((r["level"], r["rank1"]) for r in sweep["rows"]
                          if r["kind"] == kind and r["protocol"] == protocol)
            line, = ax.plot([r[0] for r in rows], [100 * r[1] for r in rows], marker="o",
                            label=protocol)
            ax.axhline(100 * sweep["keep_ratio"] * clean["rank1"], color=line.get_color(),
                       linestyle="--", linewidth=0.8)
        if kind == "scale":
            ax.set_xscale("log", base=2)  # matplotlib >= 3.3, as cvnet[plot] requires
            ax.minorticks_off()
        ax.set_xticks(sweep["levels"][kind])
        ax.set_xticklabels([str(level) for level in sweep["levels"][kind]], fontsize=7)
        if kind in ("scale", "jpeg"):
            ax.invert_xaxis()  # worse to the right
        ax.set_xlabel(sweep["units"][kind])
        ax.set_ylabel("Rank-1 (%)")
        ax.set_title(kind, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return save_png(plt, figure, path)


def write_plots(folder: str, pairs: Dict[str, PairScores], points: Dict[str, Dict[str, Any]],
                sweep: Optional[Dict[str, Any]] = None) -> List[str]:
    """Writes every plot into ``folder`` (created); returns the paths."""
    make_folders(folder)
    written = [roc_plot(os.path.join(folder, "roc.png"), pairs, points),
               score_histograms(os.path.join(folder, "scores.png"), pairs, points)]
    if sweep is not None:
        written.append(sweep_plot(os.path.join(folder, "sweep.png"), sweep))
    return written
