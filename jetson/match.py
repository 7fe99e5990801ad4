"""``cvnet-match``: cosine top-k of query embeddings in a gallery, in bounded memory.

Both sides are folders written by ``cvnet-embed`` (:mod:`cvnet.jetson.store`). The queries are
read whole and normalised once; the gallery is read in blocks (:mod:`cvnet.jetson.topk`) and
only the winners' index rows are looked up afterwards, so memory stays the same whatever the
gallery's size: the queries, one block, the top-k lists. Equal scores rank the lower gallery row
first.

Backends: ``exact`` (numpy, the default: on the CPUs measured it is as fast as FAISS's flat
search, docs/gallery.md), ``faiss`` (FAISS per block, the same lists), and a prebuilt IVF /
IVF-PQ index (``index=``, built by
:mod:`cvnet.jetson.ann_index`: approximate, for galleries past memory, its candidates re-scored
exactly). Folders whose embeddings cannot be compared (another length, input size, architecture
or weights) are refused; folders that may come from the same model but cannot prove it (an
engine without its sidecar) only with ``force`` (:func:`incompatibilities`).

A caller that decides something from the lists (a threshold per view direction, say) passes
``postprocess``: it gets the :class:`Matches` (scores, gallery rows, both folders' views and
``meta.json``) and returns the ones to write.
"""

import csv
import io
import logging
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import make_folders, write_bytes_atomic, write_text_atomic
from cvnet.core.filenames import native_name
from cvnet.jetson.store import IndexRow, Store, StoreError, file_path, read_meta
from cvnet.jetson.topk import (BACKENDS, DEFAULT_BLOCK_ROWS, normalize_rows, topk_exact,
                               topk_faiss)

logger = logging.getLogger(__name__)



class Matches(NamedTuple):
    """Top-k results, and what a post-processing step needs to decide from them.

    Attributes:
        query_rows: The queries' good index rows, in order (row ``i`` of the arrays); each has
            its ``view`` and ``mtime``.
        gallery_rows: The index rows of the gallery rows that appear in ``indices`` (only
            those: ``gallery_rows[g]`` for every ``g >= 0`` of ``indices``).
        indices: (Nq, k) int64 gallery embedding rows, best first, ``k = min(topk, gallery
            rows)``; -1 below the threshold (or where an index found fewer).
        similarities: (Nq, k) float32 cosine similarities; NaN where ``indices`` is -1.
        query_meta: The query folder's ``meta.json``.
        gallery_meta: The gallery folder's ``meta.json``.
        backend: What scored them: ``exact``, ``faiss`` or ``index`` (approximate).
    """

    query_rows: List[IndexRow]
    gallery_rows: Dict[int, IndexRow]
    indices: np.ndarray
    similarities: np.ndarray
    query_meta: Optional[Dict[str, Any]] = None
    gallery_meta: Optional[Dict[str, Any]] = None
    backend: str = "exact"


def _size(meta: Dict[str, Any]) -> Optional[str]:
    size = meta.get("input_size")
    return "x".join(str(side) for side in size) if size else None


def _differs(query_meta: Dict[str, Any], gallery_meta: Dict[str, Any], key: str) -> bool:
    """Both folders record ``key`` and the values differ."""
    query, gallery = query_meta.get(key), gallery_meta.get(key)
    return query is not None and gallery is not None and query != gallery


def incompatibilities(query_meta: Dict[str, Any], gallery_meta: Dict[str, Any]
                      ) -> Tuple[List[str], List[str]]:
    """What keeps two embedding folders apart, in two lists.

    Returns:
        ``(never, unproven)``. ``never``: differences no embeddings survive, refused even
        with ``--force``: another embedding length, input size (the same weights at 64x64 and
        256x256 map a crop to different vectors), weights (``weights_sha256``) or
        architecture. ``unproven``: the ``model_hash`` differs where one side has no weights
        hash (an engine without its sidecar is known only by its file's hash, so a .plan and
        the .onnx it was built from look different): possibly the same model, so ``--force``
        may match them. Storage differences (float16 or float32, normalised or not, backend
        and precision) are harmless for cosine similarity and not listed.
    """
    never, unproven = [], []
    engines = "{} / {}".format(query_meta.get("engine"), gallery_meta.get("engine"))
    if _differs(query_meta, gallery_meta, "embedding_dim"):
        never.append("query embeddings are {}-d, gallery embeddings {}-d".format(
            query_meta["embedding_dim"], gallery_meta["embedding_dim"]))
    if _size(query_meta) and _size(gallery_meta) and _size(query_meta) != _size(gallery_meta):
        never.append("the queries were embedded at {} pixels and the gallery at {} ({}): the "
                     "same weights at another input size give other embeddings".format(
                         _size(query_meta), _size(gallery_meta), engines))
    if _differs(query_meta, gallery_meta, "variant"):
        never.append("different architectures, {} and {}".format(query_meta["variant"],
                                                                  gallery_meta["variant"]))
    if _differs(query_meta, gallery_meta, "weights_sha256"):
        never.append("different weights (weights_sha256 {}... and {}...)".format(
            query_meta["weights_sha256"][:12], gallery_meta["weights_sha256"][:12]))
    weights_known = bool(query_meta.get("weights_sha256") and gallery_meta.get("weights_sha256"))
    if not never and not weights_known and _differs(query_meta, gallery_meta, "model_hash"):
        unproven.append("model_hash {}... ({}) and {}... ({}) differ, and without a weights "
                        "hash on both sides the folders cannot tell whether the weights are the "
                        "same".format(str(query_meta["model_hash"])[:12], query_meta.get("engine"),
                                      str(gallery_meta["model_hash"])[:12],
                                      gallery_meta.get("engine")))
    return never, unproven


def check_compatible(query_meta: Dict[str, Any], gallery_meta: Dict[str, Any],
                     force: bool = False) -> None:
    """Refuses folders whose embeddings cannot be compared (see :func:`incompatibilities`).

    Raises:
        StoreError: A difference no ``force`` can bridge, or an unproven one without ``force``.
    """
    never, unproven = incompatibilities(query_meta, gallery_meta)
    if never:
        raise StoreError("query and gallery embeddings cannot be compared: {}. Embed both with "
                         "the same engine (an engine exported at the other side's size, "
                         "cvnet-export --input-size, for a size difference)".format(
                             "; ".join(never)))
    if unproven and not force:
        raise StoreError("query and gallery may come from different models: {}. Embed both with "
                         "the same engine, or pass --force if you know the weights are the same "
                         "(e.g. a .plan and the .onnx it was built from)".format(unproven[0]))
    if unproven:
        logger.warning("--force: matching although %s", unproven[0])


def read_queries(folder: str) -> Tuple[np.ndarray, List[IndexRow], Dict[str, Any]]:
    """A query folder, read whole: ``(queries (Nq, D) float32 unit rows, good rows, meta)``."""
    with Store(folder) as store:
        queries = np.empty((store.size, store.dim), np.float32)
        for first_row, block in store.blocks(DEFAULT_BLOCK_ROWS):
            queries[first_row:first_row + len(block)] = block
        rows = [row for row in store.iter_rows() if row.status == "ok"]
        return normalize_rows(queries), rows, store.meta


def match(query_folder: str, gallery_folder: str, *, topk: int = 10,
          threshold: Optional[float] = None, force: bool = False, backend: str = "exact",
          block_rows: int = DEFAULT_BLOCK_ROWS, index: Optional[str] = None,
          nprobe: Optional[int] = None, rerank: Optional[int] = None,
          postprocess: Optional[Callable[[Matches], Matches]] = None) -> Matches:
    """Top-k gallery matches of every good query embedding.

    Args:
        query_folder: ``cvnet-embed`` output of the queries (read whole).
        gallery_folder: ``cvnet-embed`` output of the gallery (read block by block).
        topk: Matches per query; a gallery of fewer rows gives them all (the lists are
            ``min(topk, gallery rows)`` long: no memory is set aside for places no row fills).
        threshold: Drop matches with cosine similarity below it (set to -1 / NaN).
        force: Match folders from different models anyway (see :func:`check_compatible`).
        backend: ``exact`` or ``faiss`` (see the module docstring).
        block_rows: Gallery rows scored per block.
        index: A prebuilt IVF index of the gallery (``cvnet-match --build-index``): search it
            instead (approximate; needs FAISS).
        nprobe: Lists the index visits (default: the one it was built and measured with).
        rerank: Candidates per query the index returns, re-scored exactly (default: the
            index's).
        postprocess: Called with the matches (after ``threshold``); returns those to keep.

    Raises:
        StoreError: A folder is invalid, the models differ (see :func:`check_compatible`), or
            the index belongs to another gallery or model.
        ConfigError: ``topk`` < 1 or an unknown backend.
        MissingDependencyError: ``faiss`` (or an index) without FAISS installed.
    """
    if topk < 1:
        raise ConfigError("--topk must be >= 1, got {}".format(topk))
    if block_rows < 1:
        raise ConfigError("--block-rows must be >= 1, got {}".format(block_rows))
    if backend not in BACKENDS:
        raise ConfigError("unknown backend {!r}; expected one of {}".format(backend, BACKENDS))
    backend = "index" if index else backend
    gallery_meta = read_meta(gallery_folder)
    check_compatible(read_meta(query_folder), gallery_meta, force)
    queries, query_rows, query_meta = read_queries(query_folder)
    started = time.perf_counter()
    with Store(gallery_folder) as gallery:
        if len(queries) == 0 or gallery.size == 0:
            raise StoreError("nothing to match: {} query and {} gallery embeddings".format(
                len(queries), gallery.size))
        k = min(topk, gallery.size)  # what is allocated per query: never past the gallery
        if backend == "index":
            from cvnet.jetson.ann_index import AnnIndex

            with AnnIndex.load(index) as ann:
                ann.check_gallery(gallery)
                check_compatible(query_meta, ann.meta, force)
                indices, similarities = ann.search(queries, k, gallery, nprobe=nprobe,
                                                   rerank=rerank)
        elif backend == "faiss":
            indices, similarities = topk_faiss(queries, gallery, k, block_rows)
        else:
            indices, similarities = topk_exact(queries, gallery, k, block_rows)
        invalid = indices < 0
        if threshold is not None:
            invalid |= similarities < threshold
        indices = np.where(invalid, -1, indices)
        similarities = np.where(invalid, np.nan, similarities).astype(np.float32)
        gallery_rows = gallery.lookup(np.unique(indices[indices >= 0]))
    logger.info("%d queries x %d gallery rows, top-%d (%s): %.2f s", len(queries), gallery.size,
                topk, backend, time.perf_counter() - started)
    matches = Matches(query_rows, gallery_rows, indices, similarities, query_meta, gallery_meta,
                      backend)
    return postprocess(matches) if postprocess is not None else matches


def matches_csv(matches: Matches, columns: Optional[Tuple[Sequence[str], Any]] = None) -> str:
    """CSV text: ``query,rank,gallery,similarity,distance``, one line per kept match.

    ``query`` and ``gallery`` are the index's escaped names (:mod:`cvnet.core.filenames`):
    ``urllib.parse.unquote_to_bytes`` gives each file's exact name. ``columns``, ``(names,
    values(similarity) -> cells)``, appends columns (``cvnet.jetson.decide.csv_columns``).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names, values = columns or ((), None)
    writer.writerow(("query", "rank", "gallery", "similarity", "distance") + tuple(names))
    for q, query in enumerate(matches.query_rows):
        for rank, (g, sim) in enumerate(zip(matches.indices[q], matches.similarities[q]), 1):
            if g >= 0:
                writer.writerow((query.path, rank, matches.gallery_rows[g].path,
                                 "{:.6f}".format(sim), "{:.6f}".format(max(0.0, 1.0 - float(sim))))
                                + (tuple(values(float(sim))) if values else ()))
    return buffer.getvalue()


def write_matches(path: str, matches: Matches,
                  columns: Optional[Tuple[Sequence[str], Any]] = None) -> str:
    """Writes :func:`matches_csv` atomically; returns the path."""
    return write_text_atomic(path, matches_csv(matches, columns))


def _crop(root: str, name: str) -> np.ndarray:
    from cvnet.core.preprocess import ImageDecodeError, decode_image

    try:
        return decode_image(file_path(root, name))
    except ImageDecodeError as err:
        logger.warning("cannot show %s: %s", name, err)
        return np.full((64, 64, 3), 128, np.uint8)


def visualize(matches: Matches, query_root: str, gallery_root: str, out_dir: str,
              limit: Optional[int] = None) -> List[str]:
    """One PNG per query: the query crop, then its top-k crops labelled with similarity.

    Args:
        matches: From :func:`match`.
        query_root: ``meta["root"]`` of the query folder (where its paths are relative to;
            escaped text as stored).
        gallery_root: The same for the gallery.
        out_dir: Folder for ``NNNNN-<query name>.png`` (created; the query's file name, bytes
            and all).
        limit: Draw only the first ``limit`` queries.

    Returns:
        The PNG paths written.
    """
    import cv2

    from cvnet.core.visualize import ranked_list_row, stack_rows

    make_folders(out_dir)
    written = []
    count = len(matches.query_rows) if limit is None else min(limit, len(matches.query_rows))
    for q in range(count):
        query = matches.query_rows[q]
        keep = [(g, s) for g, s in zip(matches.indices[q], matches.similarities[q]) if g >= 0]
        gallery = [_crop(gallery_root, matches.gallery_rows[g].path) for g, _ in keep]
        labels = ["#{} {:.3f}".format(rank, s) for rank, (_, s) in enumerate(keep, 1)]
        row = stack_rows([ranked_list_row(_crop(query_root, query.path), gallery, None, labels)])
        stem = os.path.splitext(os.path.basename(native_name(query.path)))[0]
        name = "{:05d}-{}.png".format(q, stem)
        ok, data = cv2.imencode(".png", row)
        if not ok:
            raise StoreError("cannot encode the picture for query {}".format(query.path))
        written.append(write_bytes_atomic(os.path.join(out_dir, name), data.tobytes()))
    return written
