"""IVF and IVF-PQ indexes of a gallery, built offline, for galleries past memory (FAISS).

``cvnet-match --build-index --gallery G -o G.ivfpq`` trains an inverted-file index on a sample of
the gallery (``nlist`` k-means lists), adds every row block by block (:meth:`Store.blocks`: the
gallery is never held whole), and writes the index with a sidecar ``G.ivfpq.json`` that records
the gallery it covers (model hash, weights hash, length, input size, architecture, row count,
a fingerprint of its committed chunks) and the recall@10 of its default search against exact
search, measured on build (on the query folder's rows, or on gallery rows with each one's own
row left out).

``ivf-pq`` stores each row as ``pq_m`` bytes (product quantisation, 8 bits per sub-vector: 64
bytes for a 1,024-d row instead of 4,096), so a million rows take about 70 MB; a search visits
``nprobe`` lists, takes ``rerank`` candidates per query by their compressed scores and
re-scores them exactly from the gallery's own files (:meth:`Store.vectors`), so the scores
returned are exact cosine similarities and the ranking rule is that of exact search. ``ivf-flat``
keeps the rows whole (no compression: as large as the gallery in float32).

Matching with an index refuses a gallery it was not built from (another model, rows added
since, or other chunks: rebuild) and queries of another model
(:func:`cvnet.jetson.match.check_compatible`).
FAISS is imported only here (``pip install faiss-cpu``; 1.7.2 for Python 3.6).
"""

import json
import logging
import math
import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import write_files_atomic
from cvnet.jetson.store import Store, StoreError
from cvnet.jetson.topk import (DEFAULT_BLOCK_ROWS, TopK, normalize_rows, order_lists,
                               require_faiss, topk_exact)

logger = logging.getLogger(__name__)

INDEX_FORMAT = "cvnet-ann-index"
INDEX_FORMAT_VERSION = 1
KINDS = ("ivf-pq", "ivf-flat")
#: What an index copies from its gallery's ``meta.json``: the model's identity.
IDENTITY_KEYS = ("model_hash", "weights_sha256", "embedding_dim", "input_size", "variant",
                 "engine", "normalized")
#: Training rows per list (FAISS warns below 39).
TRAIN_ROWS_PER_LIST = 64
#: Candidates per query re-scored exactly. On a clustered 1M x 1,024 gallery (IVF-PQ, nlist
#: 1,000, pq_m 64) recall@10 against exact was 0.923 at 100, 0.959 at 200, 0.978 at 300 and
#: 0.992 at 500, whatever nprobe from 8 to 128 (docs/results.md#galleries-of-millions): the PQ
#: codes, not the lists visited, limit recall, and 300 meets the 0.95 target with a margin.
DEFAULT_RERANK = 300
RECALL_K = 10
#: Rows handed to FAISS's ``add`` at once: IVF-PQ encodes them with a distance table of
#: rows x 256 x pq_m float32 (64 MiB for 1,024 rows at pq_m 64; 1 GiB for 16,384).
ADD_ROWS = 1024
#: Queries re-scored at once (their candidates' rows are read together).
_RERANK_QUERIES = 64


def default_nlist(rows: int) -> int:
    """Lists of an IVF index of ``rows`` rows: about sqrt(rows), at least 1, at most 65,536."""
    return int(max(1, min(65536, round(math.sqrt(rows)))))


def default_pq_m(dim: int) -> int:
    """Sub-vectors of an IVF-PQ code: the largest divisor of ``dim`` up to ``dim / 16``."""
    target = max(1, dim // 16)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def pq_bits(train_rows: int) -> int:
    """Bits per IVF-PQ sub-vector code: 8 (256 centroids each) when there are at least 256
    training rows, fewer for a small gallery (k-means needs a row per centroid)."""
    return int(max(1, min(8, math.floor(math.log2(max(2, train_rows))))))


def sidecar_path(path: str) -> str:
    """The JSON that travels with an index file."""
    return path + ".json"


def _sample_rows(size: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct rows of ``size``, sorted (read in file order), seeded."""
    rng = np.random.RandomState(seed)
    if count >= size:
        return np.arange(size, dtype=np.int64)
    return np.sort(rng.choice(size, count, replace=False)).astype(np.int64)


class AnnIndex:
    """A loaded index and its sidecar.

    Args:
        index: The FAISS index (ids are gallery rows).
        meta: Its sidecar.
        path: The index file.
    """

    def __init__(self, index: Any, meta: Dict[str, Any], path: str):
        self.index, self.meta, self.path = index, meta, path

    @classmethod
    def load(cls, path: str) -> "AnnIndex":
        """Reads an index and its sidecar.

        Raises:
            StoreError: Either is missing or not a cvnet index.
            MissingDependencyError: FAISS is not installed.
        """
        faiss = require_faiss("{}: an IVF index".format(path))
        try:
            with open(sidecar_path(path), "r", encoding="utf-8") as handle:
                meta = json.load(handle)
        except (OSError, ValueError) as err:
            raise StoreError("{}: cannot read its sidecar {} ({}); build the index with "
                             "cvnet-match --build-index".format(path, sidecar_path(path), err))
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise StoreError("{}: not a cvnet index sidecar".format(sidecar_path(path)))
        if meta.get("format_version", 0) > INDEX_FORMAT_VERSION:
            raise StoreError("{}: index format {}; update cvnet".format(
                path, meta.get("format_version")))
        try:  # read here, not by faiss.read_index: it takes char *, no non-UTF-8 path
            index = faiss.deserialize_index(np.fromfile(path, np.uint8))
        except (OSError, RuntimeError) as err:
            raise StoreError("{}: FAISS cannot read it ({}); rebuild it".format(path, err))
        return cls(index, meta, path)

    def __enter__(self) -> "AnnIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.index = None

    def check_gallery(self, gallery: Store) -> None:
        """Refuses a gallery the index was not built from.

        Raises:
            StoreError: Another model, another number of rows (rows added since the build), or
                other chunks (another gallery of the same model and length).
        """
        built, meta = self.meta, gallery.meta
        if built.get("model_hash") != meta.get("model_hash"):
            raise StoreError("{} was built from a gallery of model_hash {}..., but {} holds "
                             "model_hash {}...: rebuild it with cvnet-match --build-index "
                             "--gallery {}".format(self.path, str(built.get("model_hash"))[:12],
                                                   gallery.folder,
                                                   str(meta.get("model_hash"))[:12],
                                                   gallery.folder))
        if built.get("rows") != gallery.size or self.index.ntotal != gallery.size:
            raise StoreError("{} covers {} gallery rows, but {} holds {} now (rows added since "
                             "the build): rebuild it with cvnet-match --build-index".format(
                                 self.path, built.get("rows"), gallery.folder, gallery.size))
        fingerprint = built.get("gallery_fingerprint")
        if fingerprint is None:
            logger.warning("%s was built by an older cvnet, without its gallery's fingerprint: "
                           "cannot check it was built from %s (only its model and length); "
                           "rebuild it with cvnet-match --build-index", self.path,
                           gallery.folder)
        elif fingerprint != gallery.fingerprint():
            raise StoreError("{} was built from another gallery than {} (same model and row "
                             "count, other chunks: another folder, or one re-embedded since); "
                             "rebuild it with cvnet-match --build-index --gallery {}".format(
                                 self.path, gallery.folder, gallery.folder))

    def search(self, queries: np.ndarray, k: int, gallery: Store, nprobe: Optional[int] = None,
               rerank: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Approximate top-k; with ``rerank``, candidates re-scored exactly from the gallery.

        Args:
            queries: (Nq, D) float32 unit rows.
            k: Results per query.
            gallery: The gallery the index covers (:meth:`check_gallery`).
            nprobe: Lists visited (default: the sidecar's).
            rerank: Candidates per query re-scored exactly; 0 returns the index's own scores
                (compressed for IVF-PQ). Default: the sidecar's.

        Returns:
            ``(indices, similarities)`` as :func:`cvnet.jetson.topk.topk_exact` gives them.
        """
        faiss = require_faiss("{}: an IVF index".format(self.path))
        nprobe = int(nprobe or self.meta.get("nprobe") or 1)
        rerank = int(self.meta.get("rerank", 0) if rerank is None else rerank)
        faiss.extract_index_ivf(self.index).nprobe = nprobe
        wanted = max(k, rerank)
        scores, rows = self.index.search(np.ascontiguousarray(queries, np.float32), wanted)
        if not rerank:
            return order_lists(rows[:, :k], scores[:, :k])
        return rescore(queries, rows, gallery, k)


def rescore(queries: np.ndarray, candidates: np.ndarray, gallery: Store, k: int
            ) -> Tuple[np.ndarray, np.ndarray]:
    """The exact top-k among each query's candidate rows (read from the gallery's files).

    Args:
        queries: (Nq, D) float32 unit rows.
        candidates: (Nq, m) int64 gallery rows, -1 for none.
        gallery: The open gallery.
        k: Results per query.
    """
    top = TopK(len(queries), k)
    for start in range(0, len(queries), _RERANK_QUERIES):
        batch = candidates[start:start + _RERANK_QUERIES]
        unique, where = np.unique(np.where(batch < 0, 0, batch), return_inverse=True)
        vectors = normalize_rows(gallery.vectors(unique))
        picked = vectors[where.reshape(batch.shape)]  # (q, m, D)
        scores = np.einsum("qmd,qd->qm", picked, queries[start:start + len(batch)])
        top.push_lists(np.where(batch < 0, -1, batch), scores.astype(np.float32), start)
    return top.indices, top.similarities


def recall_at(exact: np.ndarray, approximate: np.ndarray, k: int = RECALL_K) -> float:
    """Mean share of each query's exact top-k (its valid rows) found in the approximate top-k."""
    found, total = 0, 0
    for truth, got in zip(exact[:, :k], approximate[:, :k]):
        truth = set(int(row) for row in truth if row >= 0)
        found += len(truth & set(int(row) for row in got))
        total += len(truth)
    return found / total if total else 1.0


def _without_own_rows(lists: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each query's list without its own gallery row, cut to ``k``.

    Args:
        lists: (Nq, k + 1) int64 gallery rows, best first (-1: none).
        own: (Nq,) the gallery row each query is.
        k: Places kept.
    """
    kept = np.full((len(lists), k), -1, np.int64)
    for i, (row, mine) in enumerate(zip(lists, own)):
        others = row[row != mine][:k]
        kept[i, :len(others)] = others
    return kept


def build_index(gallery: Store, path: str, *, kind: str = "ivf-pq", nlist: Optional[int] = None,
                pq_m: Optional[int] = None, nprobe: Optional[int] = None,
                rerank: int = DEFAULT_RERANK, train_rows: Optional[int] = None, seed: int = 0,
                recall_queries: int = 1000, queries: Optional[np.ndarray] = None,
                block_rows: int = DEFAULT_BLOCK_ROWS) -> Dict[str, Any]:
    """Builds an IVF or IVF-PQ index of a gallery and measures its recall@10 against exact.

    Args:
        gallery: The open gallery.
        path: The index file to write (and ``path.json``), atomically.
        kind: ``ivf-pq`` or ``ivf-flat``.
        nlist: Inverted lists (default :func:`default_nlist`).
        pq_m: Bytes per row of an IVF-PQ code (default :func:`default_pq_m`).
        nprobe: Lists a search visits by default (default: nlist / 32, at least 8).
        rerank: Candidates re-scored exactly by default (0: none).
        train_rows: Rows the lists are trained on (default: 64 per list), read as a sample.
        seed: Seed of the training and recall samples.
        recall_queries: Queries of the recall measurement: gallery rows drawn at random unless
            ``queries`` are given. A gallery row finds itself first in both searches, which
            would inflate recall: each is searched for ``k + 1`` and its own row is left out
            of both lists (``recall_method`` in the sidecar says which was done).
        queries: (Nq, D) float32 unit rows to measure recall with (a query folder's).
        block_rows: Gallery rows added (and scored, for the recall) per block.

    Returns:
        The sidecar: the gallery's identity, the settings, ``recall_at_10`` (the default
        search), ``recall_at_10_no_rerank`` (the compressed scores alone), timings, sizes.

    Raises:
        ConfigError: A bad setting.
        MissingDependencyError: FAISS is not installed.
        StoreError: An empty gallery.
    """
    faiss = require_faiss("cvnet-match --build-index")
    if kind not in KINDS:
        raise ConfigError("--index-type {!r}: expected one of {}".format(kind, KINDS))
    if gallery.size == 0:
        raise StoreError("{}: the gallery is empty; nothing to index".format(gallery.folder))
    dim, size = gallery.dim, gallery.size
    nlist = int(nlist or default_nlist(size))
    pq_m = int(pq_m or default_pq_m(dim))
    if kind == "ivf-pq" and dim % pq_m:
        raise ConfigError("--pq-m {} must divide the embedding length {}".format(pq_m, dim))
    nprobe = int(min(nlist, nprobe or max(8, nlist // 32)))
    train_rows = int(min(size, train_rows or TRAIN_ROWS_PER_LIST * nlist))
    if nlist > train_rows:
        raise ConfigError("--nlist {} needs at least as many training rows; the gallery has {}: "
                          "choose a smaller --nlist".format(nlist, size))
    started = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    nbits = pq_bits(train_rows)
    if kind == "ivf-pq":
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = normalize_rows(gallery.vectors(_sample_rows(size, train_rows, seed)))
    logger.info("training %s (nlist %d, %s) on %d rows", kind, nlist,
                "{} bytes per row".format(pq_m) if kind == "ivf-pq" else "rows kept whole",
                len(sample))
    index.train(sample)
    del sample
    trained = time.perf_counter()
    for first_row, block in gallery.blocks(block_rows):
        normalize_rows(block)
        for start in range(0, len(block), ADD_ROWS):  # FAISS's PQ encoding holds a distance
            index.add(block[start:start + ADD_ROWS])  # table of rows x 256 x pq_m floats
        logger.debug("added rows %d..%d", first_row, first_row + len(block))
    added = time.perf_counter()
    meta = {key: gallery.meta.get(key) for key in IDENTITY_KEYS}
    meta.update(format=INDEX_FORMAT, format_version=INDEX_FORMAT_VERSION, kind=kind,
                nlist=nlist, pq_m=pq_m if kind == "ivf-pq" else None,
                pq_bits=nbits if kind == "ivf-pq" else None, nprobe=nprobe,
                rerank=int(rerank), rows=size, dim=dim, train_rows=train_rows,
                faiss_version=getattr(faiss, "__version__", None), seed=seed,
                train_seconds=round(trained - started, 2), add_seconds=round(added - trained, 2),
                built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    meta["gallery_fingerprint"] = gallery.fingerprint()
    ann = AnnIndex(index, meta, path)
    own = None
    if queries is None:
        own = _sample_rows(size, recall_queries, seed + 1)
        queries = normalize_rows(gallery.vectors(own))
        meta["recall_queries"] = "{} gallery rows drawn at random".format(len(queries))
        meta["recall_method"] = ("gallery rows as queries, each one's own row left out of the "
                                 "exact and the approximate top-{}".format(RECALL_K))
    else:
        queries = queries[:recall_queries]
        meta["recall_queries"] = "{} rows of the query folder".format(len(queries))
        meta["recall_method"] = "query-folder rows against the exact top-{}".format(RECALL_K)
    k = RECALL_K if own is None else RECALL_K + 1
    lists = [topk_exact(queries, gallery, k, block_rows)[0], ann.search(queries, k, gallery)[0],
             ann.search(queries, k, gallery, rerank=0)[0]]
    if own is not None:
        lists = [_without_own_rows(found, own, RECALL_K) for found in lists]
    exact, approximate, compressed = lists
    meta.update(recall_at_10=round(recall_at(exact, approximate), 4),
                recall_at_10_no_rerank=round(recall_at(exact, compressed), 4))
    data = faiss.serialize_index(index)
    meta["index_bytes"] = int(data.nbytes)
    sidecar = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    write_files_atomic({path: data.tobytes(), sidecar_path(path): sidecar.encode("utf-8")})
    logger.info("%s: %s of %d rows, recall@10 %.4f against exact (nprobe %d, rerank %d; %.4f "
                "without rerank), %.1f MB", path, kind, size, meta["recall_at_10"], nprobe,
                rerank, meta["recall_at_10_no_rerank"], data.nbytes / 1e6)
    return meta


def index_path_default(gallery_folder: str, kind: str) -> str:
    """Where ``--build-index`` writes without ``-o``: inside the gallery folder."""
    return os.path.join(gallery_folder, "{}.faiss".format(kind))
