"""Match / no-match decisions of ``cvnet-match --threshold auto`` (Python 3.6, no torch).

The threshold comes with the stores: ``cvnet-embed`` copies the model's recorded operating
points (:mod:`cvnet.core.thresholds`) into each store's ``meta.json``, with the images' view.
:func:`resolve_threshold` picks the one for the query-to-gallery view direction (an aerial query
against a ground gallery uses ``A2G``) and the requested false-positive rate, after checking
that it was measured on the model the embeddings come from. :func:`decide` then labels every
top-k match ``match`` (similarity >= threshold) or ``no-match``; a query's answer is its best
match's label.

Example:
    >>> threshold = resolve_threshold("q_store", "g_store", fpr=1e-3)
    >>> matches = match("q_store", "g_store", topk=5)
    >>> answers = decide(matches, threshold)          # one Answer per query
"""

import logging
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.thresholds import (SIDECAR_KEY, Threshold, ThresholdError, direction_of,
                                   select_threshold)
from cvnet.jetson.match import Matches
from cvnet.jetson.store import read_meta

logger = logging.getLogger(__name__)

MATCH = "match"
NO_MATCH = "no-match"
#: Columns a decision adds to each row of the matches CSV.
CSV_COLUMNS = ("decision", "threshold", "direction", "fpr")


class Answer(NamedTuple):
    """One query's answer.

    Attributes:
        query: The query's index path (escaped text).
        decision: ``match`` or ``no-match``.
        gallery: Its best gallery match's path, or None when the gallery is empty.
        similarity: That match's cosine similarity (NaN without one).
    """

    query: str
    decision: str
    gallery: Optional[str]
    similarity: float


def resolve_threshold(query_folder: str, gallery_folder: str, *, fpr: float,
                      direction: Optional[str] = None) -> Threshold:
    """The recorded threshold for matching ``query_folder`` against ``gallery_folder``.

    Args:
        query_folder: ``cvnet-embed`` output of the queries.
        gallery_folder: ``cvnet-embed`` output of the gallery.
        fpr: Target false-positive rate (one the evaluation recorded).
        direction: Overrides the direction the stores' views give (``A2G``... or ``all``).

    Raises:
        ThresholdError: No thresholds, thresholds of another model, an unknown direction or an
            FPR that was not measured (see :func:`cvnet.core.thresholds.select_threshold`).
    """
    query_meta, gallery_meta = read_meta(query_folder), read_meta(gallery_folder)
    if direction is None:
        direction = direction_of(query_meta.get("view"), gallery_meta.get("view"))
    block, source = gallery_meta.get(SIDECAR_KEY), gallery_folder
    if block is None:
        block, source = query_meta.get(SIDECAR_KEY), query_folder
    elif query_meta.get(SIDECAR_KEY) not in (None, block):
        logger.warning("the query and gallery stores carry different thresholds (measured "
                       "separately); using the gallery's (%s)", gallery_folder)
    if block is None and query_folder != gallery_folder:
        source = "neither {} nor {}".format(query_folder, gallery_folder)
    threshold = select_threshold(block, direction=direction, fpr=fpr,
                                 model_hash=gallery_meta.get("model_hash"), source=source)
    if not threshold.resolved:
        logger.warning("the %s threshold for FPR %g was measured on too few negative pairs to "
                       "resolve that rate: it accepts no measured negative, and its real FPR "
                       "is unknown; evaluate on a larger set", threshold.direction, fpr)
    return threshold


def decide(matches: Matches, threshold: Threshold) -> List[Answer]:
    """Each query's answer: ``match`` when its best similarity is >= the threshold."""
    answers = []
    for q, query in enumerate(matches.query_rows):
        best = int(matches.indices[q, 0]) if matches.indices.shape[1] else -1
        if best < 0:
            answers.append(Answer(query.path, NO_MATCH, None, float("nan")))
            continue
        similarity = float(matches.similarities[q, 0])
        answers.append(Answer(query.path, MATCH if similarity >= threshold.threshold
                              else NO_MATCH, matches.gallery_rows[best].path, similarity))
    return answers


def csv_columns(threshold: Threshold) -> Tuple[Sequence[str], Any]:
    """The ``(names, values(similarity))`` a decision adds to each row of the matches CSV."""
    def values(similarity: float) -> Sequence[str]:
        return (MATCH if similarity >= threshold.threshold else NO_MATCH,
                "{:.6f}".format(threshold.threshold), threshold.direction,
                "{:g}".format(threshold.fpr))
    return CSV_COLUMNS, values


def answers_json(answers: Sequence[Answer], threshold: Threshold) -> Dict[str, Any]:
    """The answers and the threshold used, as JSON types (``cvnet-match --json-out``)."""
    counts = {MATCH: 0, NO_MATCH: 0}
    for answer in answers:
        counts[answer.decision] += 1
    return {"threshold": dict(threshold._asdict(), rule="match when cosine similarity >= "
                                                       "threshold"),
            "counts": counts,
            "queries": [dict(answer._asdict(), similarity=None if np.isnan(answer.similarity)
                             else answer.similarity) for answer in answers]}
