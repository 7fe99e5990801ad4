"""Thresholds that travel with the model: measured once, carried into every store (Python 3.6).

``cvnet-eval MODEL --write-thresholds`` measures the operating points of a model
(:mod:`cvnet.core.operating_points`) per view direction and records them in the model's
sidecar under :data:`SIDECAR_KEY`; ``cvnet-embed`` copies them into the ``meta.json`` of every
store it writes with that model; ``cvnet-match --threshold auto --fpr 1e-3`` picks the threshold
of the query-to-gallery direction (:func:`select_threshold`) and answers match / no-match.

Where the block lives:

- ``model.onnx`` -> ``model.onnx.json``, ``model.plan`` -> ``model.plan.json``: the artefact's
  own sidecar (:mod:`cvnet.core.artifact` keeps keys it does not know, so every reader still
  reads it). ``cvnet-build`` copies the ONNX sidecar into the plan's, so thresholds written for
  an ONNX file travel on to the engines built from it after the write (same weights, same
  model hash; an FP16 engine's scores differ from FP32 ones by about 1e-3, measure the plan
  itself where that matters).
- ``model.pt`` (a checkpoint has no sidecar) -> ``model.pt.json``, a small sidecar holding only
  the block (format :data:`CHECKPOINT_SIDECAR_FORMAT`); the model hash is then the checkpoint
  file's SHA-256, as in a store embedded from it.

The block (JSON)::

    {"format": "cvnet-operating-points", "version": 1,
     "model_hash": "<the store's model_hash: weights_sha256, else the file's SHA-256>",
     "rule": "match when cosine similarity >= threshold",
     "measured": {"model_file": "cvnet.onnx", "backend": "onnxruntime",
                  "dataset": "/data/cvpair/dataset.csv", "created": "2026-...Z"},
     "directions": {"A2G": {"positives": 812, "negatives": 64020, "eer": 0.08,
                            "eer_threshold": 0.61, "exclusion": "...",
                            "points": [{"fpr_target": 0.001, "threshold": 0.74, "tpr": 0.62,
                                        "fpr": 0.00098, "resolved": true, ...}, ...]},
                    "G2A": {...}}}

A direction is named by the protocol that measured it: ``A2G`` = an aerial query against a
ground gallery, ``G2A``, ``A2A``, ``G2G``, and ``all`` for a single-view or mixed set.
"""

import datetime
import json
import logging
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional

from cvnet.core.artifact import SIDECAR_SUFFIX, sidecar_text
from cvnet.core.datasets import PROTOCOLS
from cvnet.core.errors import ConfigError, CVNetError
from cvnet.core.fileio import sha256_file, write_text_atomic
from cvnet.core.operating_points import format_fpr
from cvnet.core.runtimes import model_suffix, suffixes_of

logger = logging.getLogger(__name__)

#: The sidecar key (and store ``meta.json`` key) of the block.
SIDECAR_KEY = "operating_points"
FORMAT = "cvnet-operating-points"
VERSION = 1
#: ``format`` of the sidecar written next to a ``.pt`` checkpoint.
CHECKPOINT_SIDECAR_FORMAT = "cvnet-checkpoint-sidecar"
#: Suffixes whose own artefact sidecar takes the block; checkpoints get a small one.
ARTIFACT_SUFFIXES = (".onnx", ".plan", ".engine")
CHECKPOINT_SUFFIXES = suffixes_of("torch")
#: View directions: the protocols that measure them.
DIRECTIONS = PROTOCOLS
RULE = "match when cosine similarity >= threshold"
VIEWS = ("A", "G")


class ThresholdError(CVNetError):
    """Thresholds are missing, from another model, or do not cover what was asked."""


class Threshold(NamedTuple):
    """The operating point a decision uses.

    Attributes:
        direction: ``A2G``, ``G2A``, ``A2A``, ``G2G`` or ``all``.
        fpr: The target false-positive rate it was chosen for.
        threshold: Cosine similarity; a pair matches when its similarity is >= it.
        tpr: The true-positive rate measured at it.
        measured_fpr: The false-positive rate measured at it (<= ``fpr``).
        resolved: False when the evaluation had too few negative pairs for ``fpr``.
        source: Where it came from (a store folder or a sidecar), for messages.
    """

    direction: str
    fpr: float
    threshold: float
    tpr: float
    measured_fpr: float
    resolved: bool
    source: str

    def describe(self) -> str:
        """``"A2G threshold 0.741200 (FPR 1e-03, TPR 62.0% measured)"``."""
        return "{} threshold {:.6f} (FPR {}, TPR {:.1f}% measured{})".format(
            self.direction, self.threshold, format_fpr(self.fpr), 100 * self.tpr,
            "" if self.resolved else "; too few negatives to resolve this FPR")


def model_hash(path: str, metadata: Any = None, file_hash: Optional[str] = None) -> str:
    """What identifies a model's embeddings: its weights' SHA-256 when a sidecar records it,
    else the file's SHA-256 (``file_hash`` when already computed). A store's ``model_hash``."""
    weights = getattr(metadata, "weights_sha256", None)
    return weights or file_hash or sha256_file(path)


def thresholds_block(points: Dict[str, Dict[str, Any]], *, model_hash: str, model_file: str,
                     backend: str, dataset: str) -> Dict[str, Any]:
    """The block to record, from :attr:`cvnet.core.evaluation.EvaluationReport.operating_points`.

    Raises:
        ConfigError: No protocol has operating points.
    """
    if not points:
        raise ConfigError("no operating points to record: the evaluation measured none (every "
                          "protocol needs positive and negative pairs)")
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"format": FORMAT, "version": VERSION, "model_hash": model_hash, "rule": RULE,
            "measured": {"model_file": os.path.basename(model_file), "backend": backend,
                         "dataset": dataset, "created": created},
            "directions": {protocol: dict(summary) for protocol, summary in points.items()}}


def check_block(block: Any, source: str) -> Dict[str, Any]:
    """Validates a block read from a sidecar or a store.

    Raises:
        ThresholdError: Naming ``source`` and what is wrong.
    """
    def refuse(what: str) -> ThresholdError:
        return ThresholdError("{}: the recorded thresholds are invalid ({}); measure them again "
                              "with cvnet-eval MODEL --data ... --write-thresholds".format(
                                  source, what))

    if not isinstance(block, dict) or block.get("format") != FORMAT:
        raise refuse("format {!r}, expected {!r}".format(
            block.get("format") if isinstance(block, dict) else block, FORMAT))
    if block.get("version") != VERSION:
        raise refuse("version {!r}; this cvnet reads version {}".format(block.get("version"),
                                                                        VERSION))
    if not isinstance(block.get("model_hash"), str) or not block["model_hash"]:
        raise refuse("no model_hash")
    directions = block.get("directions")
    if not isinstance(directions, dict) or not directions:
        raise refuse("no directions")
    for name, summary in directions.items():
        if name not in DIRECTIONS:
            raise refuse("unknown direction {!r}".format(name))
        points = summary.get("points") if isinstance(summary, dict) else None
        if not isinstance(points, list) or not all(
                isinstance(p, dict) and _finite(p.get("threshold"))
                and _finite(p.get("fpr_target")) for p in points):
            raise refuse("direction {} has no valid points".format(name))
    return block


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def direction_of(query_view: Optional[str], gallery_view: Optional[str]) -> Optional[str]:
    """``("A", "G")`` -> ``"A2G"``; None when a view is unknown."""
    if query_view in VIEWS and gallery_view in VIEWS:
        return "{}2{}".format(query_view, gallery_view)
    return None


def select_threshold(block: Any, *, direction: Optional[str], fpr: float, model_hash: str,
                     source: str) -> Threshold:
    """The recorded threshold for a direction and target FPR, after checking the model.

    Args:
        block: The recorded block (from a store's ``meta.json``), or None.
        direction: ``A2G``... or None when the views are unknown.
        fpr: The target false-positive rate (one of those recorded).
        model_hash: The store's model hash; the block must have been measured on that model.
        source: The store or sidecar, for messages.

    Raises:
        ThresholdError: No block, another model, an unknown or unmeasured direction, or an FPR
            that was not measured; each message says how to fix it.
    """
    if block is None:
        raise ThresholdError(
            "{} records no thresholds: its model was not evaluated with --write-thresholds "
            "before cvnet-embed ran. Run cvnet-eval MODEL --data DATA --write-thresholds, embed "
            "again, or give a numeric --threshold".format(source))
    block = check_block(block, source)
    if block["model_hash"] != model_hash:
        raise ThresholdError(
            "{}: the recorded thresholds were measured on another model (model_hash {}..., the "
            "embeddings come from {}...); thresholds do not transfer between models. Evaluate "
            "this model with --write-thresholds and embed again".format(
                source, block["model_hash"][:12], str(model_hash)[:12]))
    measured = sorted(block["directions"])
    if direction is None:
        raise ThresholdError(
            "{}: the view direction is unknown (the query or gallery store records no view); "
            "embed with cvnet-embed --view A|G, or pass --direction (measured: {})".format(
                source, ", ".join(measured)))
    if direction not in block["directions"]:
        raise ThresholdError(
            "{}: no thresholds for direction {} (measured: {}); evaluate with cvnet-eval "
            "--protocol {} --write-thresholds".format(source, direction, ", ".join(measured),
                                                     direction))
    points = block["directions"][direction]["points"]
    for point in points:
        if math.isclose(point["fpr_target"], fpr, rel_tol=1e-6):
            return Threshold(direction, float(point["fpr_target"]), float(point["threshold"]),
                             float(point.get("tpr", float("nan"))),
                             float(point.get("fpr", float("nan"))),
                             bool(point.get("resolved", True)), source)
    raise ThresholdError("{}: no threshold for FPR {} in direction {} (measured: {}); pass one "
                         "of those to --fpr, or evaluate with cvnet-eval --fpr {}".format(
                             source, format_fpr(fpr), direction,
                             ", ".join(format_fpr(p["fpr_target"]) for p in points),
                             format_fpr(fpr)))


def thresholds_path(model_path: str) -> str:
    """The file that holds a model's thresholds: its sidecar (``model.onnx.json``,
    ``model.plan.json``, ``model.pt.json``).

    Raises:
        ConfigError: A model file of a kind that has no sidecar.
    """
    suffix = model_suffix(model_path)
    if suffix not in ARTIFACT_SUFFIXES + CHECKPOINT_SUFFIXES:
        raise ConfigError("{}: cannot record thresholds for a {} file; expected one of {}".format(
            model_path, suffix or "suffix-less", ", ".join(ARTIFACT_SUFFIXES +
                                                          CHECKPOINT_SUFFIXES)))
    return model_path + SIDECAR_SUFFIX


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as err:
        raise ThresholdError("cannot read {} ({})".format(path, err))
    if not isinstance(data, dict):
        raise ThresholdError("{}: expected a JSON object".format(path))
    return data


def write_thresholds(model_path: str, block: Dict[str, Any]) -> str:
    """Records ``block`` in the model's sidecar, atomically; returns the sidecar's path.

    An artefact's sidecar is rewritten whole (every other key kept, validated as a sidecar);
    a checkpoint's small sidecar is created or updated. A block already recorded for the same
    model is merged with ``block`` (:func:`merge_blocks`: ``--protocol A2G`` then
    ``--protocol G2A`` keeps both); one of another model, or an invalid one, is replaced.

    Raises:
        ThresholdError: The artefact has no sidecar to record them in, or a file named like a
            checkpoint's sidecar is something else.
    """
    path = thresholds_path(model_path)
    checkpoint = model_suffix(model_path) in CHECKPOINT_SUFFIXES
    if checkpoint:
        data = _read_json(path) if os.path.exists(path) else {
            "format": CHECKPOINT_SIDECAR_FORMAT, "file": os.path.basename(model_path)}
        if data.get("format") != CHECKPOINT_SIDECAR_FORMAT:
            raise ThresholdError("{} exists and is not a cvnet checkpoint sidecar (format {!r}); "
                                 "move it away to record thresholds there".format(
                                     path, data.get("format")))
        data[SIDECAR_KEY] = merge_blocks(data.get(SIDECAR_KEY), block, path)
        return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    if not os.path.exists(path):
        raise ThresholdError("{} has no sidecar ({}) to record the thresholds in; export it "
                             "with cvnet-export (or build it with cvnet-build), which write "
                             "one".format(model_path, os.path.basename(path)))
    data = _read_json(path)
    data[SIDECAR_KEY] = merge_blocks(data.get(SIDECAR_KEY), block, path)
    return write_text_atomic(path, sidecar_text(data, source=path))


def merge_blocks(recorded: Any, block: Dict[str, Any], source: str) -> Dict[str, Any]:
    """The block to record when ``recorded`` is already there: measuring one direction or one
    FPR must not delete the others.

    Same model hash: the directions of ``block`` replace theirs; a recorded direction it did
    not measure is kept whole; within a direction measured again, a recorded point whose
    ``fpr_target`` ``block`` did not measure is kept. What is kept from an earlier measurement
    carries its ``measured`` provenance. Another model hash (or no, or an invalid, block):
    ``block`` replaces it. Each case is logged.

    Args:
        recorded: The block in the sidecar now, or None.
        block: The block just measured (:func:`thresholds_block`).
        source: The sidecar, for messages.
    """
    if recorded is None:
        return block
    try:
        recorded = check_block(recorded, source)
    except ThresholdError as err:
        logger.warning("replacing the invalid recorded thresholds: %s", err)
        return block
    if recorded["model_hash"] != block["model_hash"]:
        logger.warning("%s: replacing the thresholds of another model (model_hash %s...; %s "
                       "dropped)", source, recorded["model_hash"][:12],
                       ", ".join(sorted(recorded["directions"])))
        return block
    provenance = recorded.get("measured")
    merged = dict(block, directions={})
    kept, replaced = [], []
    for name, summary in recorded["directions"].items():
        if name not in block["directions"]:
            merged["directions"][name] = dict(summary)
            merged["directions"][name].setdefault("measured", provenance)
            kept.append(name)
    for name, summary in block["directions"].items():
        summary = dict(summary)
        if name in recorded["directions"]:
            measured = [p["fpr_target"] for p in summary.get("points", [])]
            older = [dict(p) for p in recorded["directions"][name]["points"]
                     if not any(math.isclose(p["fpr_target"], f, rel_tol=1e-6)
                                for f in measured)]
            for point in older:
                point.setdefault("measured", recorded["directions"][name].get(
                    "measured", provenance))
            summary["points"] = sorted(list(summary.get("points", [])) + older,
                                       key=lambda p: -p["fpr_target"])
            replaced.append(name + "".join(
                " (kept FPR {})".format(format_fpr(p["fpr_target"])) for p in older))
        merged["directions"][name] = summary
    logger.info("%s: thresholds of this model merged: %s%s", source,
                "measured again " + ", ".join(replaced) + "; " if replaced else "",
                "kept " + ", ".join(sorted(kept)) if kept else "nothing else kept")
    return merged


def read_thresholds(model_path: str, metadata: Any = None) -> Optional[Dict[str, Any]]:
    """The block recorded for a model, or None.

    Args:
        model_path: The model file.
        metadata: Its sidecar as read by the runner (an artefact's), whose unknown keys hold
            the block; a checkpoint's small sidecar is read from disk.

    Raises:
        ThresholdError: A block is there but invalid.
    """
    extra = getattr(metadata, "extra", None) or {}
    if SIDECAR_KEY in extra:
        return check_block(extra[SIDECAR_KEY], model_path + SIDECAR_SUFFIX)
    if model_suffix(model_path) in CHECKPOINT_SUFFIXES:
        path = model_path + SIDECAR_SUFFIX
        if os.path.exists(path):
            data = _read_json(path)
            if data.get("format") == CHECKPOINT_SIDECAR_FORMAT and SIDECAR_KEY in data:
                return check_block(data[SIDECAR_KEY], path)
    return None


def carried_thresholds(model_path: str, metadata: Any, store_hash: str
                       ) -> Optional[Dict[str, Any]]:
    """The block ``cvnet-embed`` copies into a store of embeddings with ``store_hash``.

    None (logged) when the model has none, or when it was measured on another model (a
    sidecar copied from elsewhere): a store never carries thresholds of other weights.
    """
    block = read_thresholds(model_path, metadata)
    if block is None:
        logger.info("%s records no thresholds (cvnet-eval --write-thresholds records them); "
                    "cvnet-match --threshold auto will refuse this store", model_path)
        return None
    if block["model_hash"] != store_hash:
        logger.warning("%s: its recorded thresholds were measured on another model (model_hash "
                       "%s..., this one is %s...) and are not carried into the store",
                       model_path, block["model_hash"][:12], store_hash[:12])
        return None
    logger.info("carrying the thresholds of %s into the store (%s)", model_path,
                ", ".join(sorted(block["directions"])))
    return block


def summary_lines(block: Dict[str, Any]) -> List[str]:
    """One line per direction and FPR, for logs."""
    lines = []
    for direction, summary in sorted(block["directions"].items()):
        for point in summary["points"]:
            lines.append("{} FPR {}: threshold {:.6f}, TPR {:.1f}%{}".format(
                direction, format_fpr(point["fpr_target"]), point["threshold"],
                100 * point.get("tpr", float("nan")),
                "" if point.get("resolved", True) else " (unresolved: too few negatives)"))
    return lines
