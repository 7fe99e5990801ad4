"""``cvnet-match``: exact cosine top-k of query embeddings against a gallery, memory bounded.

Both sides are folders written by ``cvnet-embed`` (:mod:`cvnet.jetson.store`). The gallery is read
one memory-mapped chunk at a time and scored in blocks of at most ``block_elements`` similarities,
keeping a running top-k per query, so memory stays bounded by the queries, one block and the top-k
lists whatever the gallery's size (a 4 GB Nano handles galleries that do not fit in RAM). Equal
scores rank the lower gallery row first (scores of identical rows in different blocks can differ in
the last bit of float32). Folders whose embeddings cannot be compared (another length, input size,
architecture or weights) are refused; folders that may come from the same model but cannot prove it
(an engine without its sidecar) only with ``force`` (:func:`incompatibilities`).

For galleries beyond one device (millions of entries), ``backend="faiss"`` uses a FAISS
``IndexFlatIP`` on the host (still exact; FAISS is imported only then).
"""

import csv
import io
import logging
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import make_folders, write_bytes_atomic, write_text_atomic
from cvnet.core.filenames import native_name
from cvnet.core.metrics import cosine_distance
from cvnet.jetson.store import (IndexRow, StoreError, file_path, iter_embedding_chunks,
                                load_embeddings, read_meta)

logger = logging.getLogger(__name__)

#: Similarities computed at once (16M float32 = 64 MiB).
DEFAULT_BLOCK_ELEMENTS = 1 << 24
BACKENDS = ("exact", "faiss")


class Matches(NamedTuple):
    """Top-k results.

    Attributes:
        query_rows: The queries' good index rows, in order (row ``i`` of the arrays).
        gallery_rows: Gallery index rows by embedding row (``gallery_rows[j]`` has ``row == j``).
        indices: (Nq, k) int64 gallery embedding rows, best first; -1 past the gallery's end or
            below the threshold.
        similarities: (Nq, k) float32 cosine similarities; NaN where ``indices`` is -1.
    """

    query_rows: List[IndexRow]
    gallery_rows: List[IndexRow]
    indices: np.ndarray
    similarities: np.ndarray


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


def _merge(best_idx: np.ndarray, best_sim: np.ndarray, idx: np.ndarray, sim: np.ndarray,
           k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keeps the k best per row of two candidate sets; ties by the lower gallery row."""
    all_idx = np.concatenate([best_idx, idx], axis=1)
    all_sim = np.concatenate([best_sim, sim], axis=1)
    key_idx = np.where(all_idx < 0, np.iinfo(np.int64).max, all_idx)
    order = np.lexsort((key_idx, -all_sim), axis=-1)[:, :k] if all_sim.shape[1] else None
    rows = np.arange(len(all_idx))[:, None]
    return all_idx[rows, order], all_sim[rows, order]


def topk_exact(queries: np.ndarray, gallery_folder: str, k: int,
               block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> Tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k over a gallery folder, one bounded block at a time.

    Args:
        queries: (Nq, D) embeddings (any float dtype, normalised here).
        gallery_folder: A ``cvnet-embed`` output folder.
        k: Matches per query.
        block_elements: Largest (queries x gallery) block scored at once.

    Returns:
        ``(indices, similarities)``: (Nq, k) int64 gallery rows (-1 when the gallery has fewer
        than k entries) and (Nq, k) float32 cosine similarities (-inf there).
    """
    count = len(queries)
    best_idx = np.full((count, k), -1, np.int64)
    best_sim = np.full((count, k), -np.inf, np.float32)
    query_block = max(1, min(count, block_elements // 1024))
    for first_row, embeddings, _ in iter_embedding_chunks(gallery_folder):
        gallery_block = max(1, block_elements // max(1, min(count, query_block)))
        for g_start in range(0, len(embeddings), gallery_block):
            gallery = np.asarray(embeddings[g_start:g_start + gallery_block], np.float32)
            for q_start in range(0, count, query_block):
                q_stop = q_start + query_block
                sim = 1.0 - cosine_distance(queries[q_start:q_stop], gallery)
                cut = min(k, sim.shape[1])
                part = np.argpartition(-sim, cut - 1, axis=1)[:, :cut] if cut < sim.shape[1] \
                    else np.tile(np.arange(sim.shape[1]), (len(sim), 1))
                part_sim = np.take_along_axis(sim, part, axis=1)
                best_idx[q_start:q_stop], best_sim[q_start:q_stop] = _merge(
                    best_idx[q_start:q_stop], best_sim[q_start:q_stop],
                    part + first_row + g_start, part_sim, k)
    return best_idx, best_sim


def topk_faiss(queries: np.ndarray, gallery_folder: str, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The same top-k with a FAISS ``IndexFlatIP`` (host only; the gallery is held in RAM).

    Raises:
        ImportError: FAISS is not installed, with the install command.
    """
    try:
        import faiss  # host-only, optional
    except ImportError:
        raise ImportError("--backend faiss needs FAISS, which is not installed: pip install "
                          "faiss-cpu (host only; on the device use the exact backend)")
    from cvnet.core.preprocess import l2_normalize

    dim = queries.shape[1]
    index = faiss.IndexFlatIP(dim)
    for _, embeddings, _ in iter_embedding_chunks(gallery_folder):
        index.add(l2_normalize(np.asarray(embeddings, np.float32)))
    sim, idx = index.search(l2_normalize(np.asarray(queries, np.float32)), k)
    sim = np.where(idx < 0, -np.inf, sim).astype(np.float32)
    return idx.astype(np.int64), sim


def match(query_folder: str, gallery_folder: str, *, topk: int = 10,
          threshold: Optional[float] = None, force: bool = False, backend: str = "exact",
          block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> Matches:
    """Top-k gallery matches of every good query embedding.

    Args:
        query_folder: ``cvnet-embed`` output of the queries (read whole).
        gallery_folder: ``cvnet-embed`` output of the gallery (read chunk by chunk).
        topk: Matches per query.
        threshold: Drop matches with cosine similarity below it (set to -1 / NaN).
        force: Match folders from different models anyway.
        backend: ``"exact"`` (chunked numpy) or ``"faiss"``.
        block_elements: See :func:`topk_exact`.

    Raises:
        StoreError: A folder is invalid or the models differ (see :func:`check_compatible`).
        ConfigError: ``topk`` < 1 or an unknown backend.
    """
    if topk < 1:
        raise ConfigError("--topk must be >= 1, got {}".format(topk))
    if backend not in BACKENDS:
        raise ConfigError("unknown backend {!r}; expected one of {}".format(backend, BACKENDS))
    check_compatible(read_meta(query_folder), read_meta(gallery_folder), force)
    queries, query_rows, _ = load_embeddings(query_folder)
    query_rows = [row for row in query_rows if row.status == "ok"]
    gallery_rows = [row for _, _, rows in iter_embedding_chunks(gallery_folder) for row in rows]
    if len(queries) == 0 or not gallery_rows:
        raise StoreError("nothing to match: {} query and {} gallery embeddings".format(
            len(queries), len(gallery_rows)))
    if backend == "faiss":
        indices, similarities = topk_faiss(queries, gallery_folder, topk)
    else:
        indices, similarities = topk_exact(queries, gallery_folder, topk, block_elements)
    invalid = indices < 0
    if threshold is not None:
        invalid |= similarities < threshold
    indices = np.where(invalid, -1, indices)
    similarities = np.where(invalid, np.nan, similarities).astype(np.float32)
    return Matches(query_rows, gallery_rows, indices, similarities)


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
