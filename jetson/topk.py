"""Exact cosine top-k over a store, block by block, in bounded memory (Python 3.6, numpy).

The queries are normalised once; the gallery is read in blocks of ``block_rows`` rows
(:meth:`cvnet.jetson.store.Store.blocks`: one reused buffer, sized for the cache rather than by
the store's chunks), each block normalised and scored with one matrix product, and a running
top-k per query (:class:`TopK`) keeps the k best. Memory: the queries, one block, one
(queries x block) score matrix and the top-k lists, whatever the gallery's size.

**Ranking rule** (every backend): higher cosine similarity first; equal similarities rank the
lower gallery row first. :class:`TopK` keeps it exactly, ties at the k-th place included.

Two backends score the blocks: ``exact`` (numpy: a matrix product, then only the scores that
beat the current k-th best of their query are merged, so after the first blocks a block costs
little more than its product), and ``faiss`` (FAISS ``IndexFlatIP`` per block and
``faiss.ResultHeap``, imported only then: ``pip install faiss-cpu``; 1.7.2 has wheels for
Python 3.6 on x86_64 and aarch64). Both give the same ordered lists (the tie rule is applied
to FAISS's lists afterwards).
"""

import logging
from typing import Any, Tuple

import numpy as np

logger = logging.getLogger(__name__)

#: Gallery rows scored per block: 4096 x 1024-d float32 = 16 MiB of gallery, a (1000 x 4096)
#: score matrix of 16 MiB: the product runs at full speed and the block stays in the L3 cache.
DEFAULT_BLOCK_ROWS = 4096
#: Largest (queries x block) score matrix at once, elements (64 MiB of float32).
MAX_SCORES = 1 << 24
BACKENDS = ("exact", "faiss")
FAISS_HINT = ("pip install faiss-cpu (on Python 3.6, x86_64 or aarch64 such as the Jetson Nano: "
              "pip install faiss-cpu==1.7.2), or use --backend exact, which needs only numpy")


def require_faiss(purpose: str) -> Any:
    """Imports FAISS, or raises an error naming ``purpose`` and how to install it."""
    from cvnet.engines.deps import require

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing
    return require("faiss", purpose, FAISS_HINT)


def normalize_rows(rows: np.ndarray) -> np.ndarray:
    """(n, D) float32 rows scaled to unit length in place (rows of zeros stay zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    rows /= np.maximum(norms, 1e-12)[:, None]
    return rows


class TopK:
    """A running top-k per query: the k highest scores seen, ties to the lower gallery row.

    Feed it the scores of gallery blocks, in any order (each row once). After the first
    blocks only scores at or above a query's current k-th best are looked at, so a block costs
    one comparison pass over its scores.

    Args:
        count: Queries.
        k: Results per query.

    Attributes:
        indices: (count, k) int64 gallery rows, best first; -1 where fewer than k were seen.
        similarities: (count, k) float32 scores; -inf where ``indices`` is -1.
    """

    def __init__(self, count: int, k: int):
        self.k = k
        self.indices = np.full((count, k), -1, np.int64)
        self.similarities = np.full((count, k), -np.inf, np.float32)

    def push(self, scores: np.ndarray, first_row: int, first_query: int = 0) -> None:
        """Merges a block of scores.

        Args:
            scores: (n, q) float32, gallery-major (what ``block.dot(queries.T)`` gives): gallery
                rows ``first_row..first_row+n`` against queries ``first_query..first_query+q``.
                NaN scores are left out (as if -inf and never listed): without that, a block
                of k or more NaN rows made its k-th best NaN and dropped every real match.
            first_row: The block's first gallery row.
            first_query: The block's first query.
        """
        width, count = scores.shape
        kth = self.similarities[first_query:first_query + count, self.k - 1]
        nan = np.isnan(scores)
        if nan.any():  # a NaN row (a store from before commits refused them) never ranks
            scores = np.where(nan, np.float32(-np.inf), scores)
        beats = scores >= kth[None, :]  # an equal score may still win on a lower row
        beats &= ~nan
        if width > self.k and np.count_nonzero(beats) > 4 * self.k * count:
            # A dense block (the first ones): keep each query's k best of the block, ties at
            # the k-th place included, before merging.
            block_kth = np.partition(scores, width - self.k, axis=0)[width - self.k]
            beats &= scores >= block_kth[None, :]
        column, query = np.nonzero(beats)
        if len(query):
            self._merge(query + first_query, column.astype(np.int64) + first_row,
                        scores[column, query])

    def push_lists(self, indices: np.ndarray, similarities: np.ndarray,
                   first_query: int = 0) -> None:
        """Merges candidate lists: (q, m) gallery rows (-1: none) and their scores, of queries
        ``first_query..first_query+q``."""
        query, column = np.nonzero(indices >= 0)
        self._merge(query + first_query, indices[query, column], similarities[query, column])

    def _merge(self, query: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> None:
        """Merges candidates ``(query, gallery row, score)`` into the lists of their queries."""
        touched = np.unique(query)
        k = self.k
        all_query = np.concatenate([np.repeat(touched, k), query])
        all_rows = np.concatenate([self.indices[touched].ravel(), rows])
        all_scores = np.concatenate([self.similarities[touched].ravel(),
                                     scores.astype(np.float32)])
        row_key = np.where(all_rows < 0, np.iinfo(np.int64).max, all_rows)
        order = np.lexsort((row_key, -all_scores, all_query))
        starts = np.searchsorted(all_query[order], touched)
        take = order[starts[:, None] + np.arange(k)[None, :]]
        self.indices[touched] = all_rows[take]
        self.similarities[touched] = all_scores[take]


def _query_step(count: int, block_rows: int) -> int:
    return max(1, min(count, MAX_SCORES // max(1, block_rows)))


def topk_exact(queries: np.ndarray, store: Any, k: int, block_rows: int = DEFAULT_BLOCK_ROWS,
               start: int = 0, stop: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k with numpy.

    Args:
        queries: (Nq, D) float32, already unit length (:func:`normalize_rows`).
        store: An open :class:`cvnet.jetson.store.Store`.
        k: Results per query.
        block_rows: Gallery rows per block.
        start: First gallery row searched.
        stop: Row after the last (default: the end).

    Returns:
        ``(indices, similarities)``: (Nq, k) int64 gallery rows (-1 past the gallery's end) and
        (Nq, k) float32 cosine similarities (-inf there).
    """
    top = TopK(len(queries), k)
    step = _query_step(len(queries), block_rows)
    for first_row, block in store.blocks(block_rows, start, stop):
        normalize_rows(block)
        for first_query in range(0, len(queries), step):
            scores = block.dot(queries[first_query:first_query + step].T)  # (n, q)
            top.push(scores, first_row, first_query)
    return top.indices, top.similarities


def topk_faiss(queries: np.ndarray, store: Any, k: int, block_rows: int = DEFAULT_BLOCK_ROWS
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The same top-k with FAISS: ``IndexFlatIP`` per block, ``faiss.ResultHeap`` across them.

    Memory: one block (held twice: the buffer and FAISS's copy) and the heap.

    Raises:
        MissingDependencyError: FAISS is not installed (an ImportError, with the install line).
    """
    faiss = require_faiss("--backend faiss")
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    queries = np.ascontiguousarray(queries, np.float32)
    for first_row, block in store.blocks(block_rows):
        normalize_rows(block)
        index = faiss.IndexFlatIP(block.shape[1])
        index.add(block)
        scores, rows = index.search(queries, min(k, len(block)))
        rows = np.where(rows < 0, -1, rows + first_row)
        if scores.shape[1] < k:  # a last block shorter than k
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        heap.add_result(np.ascontiguousarray(scores, np.float32),
                        np.ascontiguousarray(rows, np.int64))
    heap.finalize()
    return order_lists(heap.I, heap.D)


def order_lists(indices: np.ndarray, similarities: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each list re-ordered by the ranking rule (score down, then gallery row up; -1 last).

    Returns:
        ``(indices, similarities)``: int64 and float32, -1 / -inf for empty places.
    """
    indices = np.asarray(indices, np.int64)
    similarities = np.where(indices < 0, -np.inf, similarities).astype(np.float32)
    row_key = np.where(indices < 0, np.iinfo(np.int64).max, indices)
    order = np.lexsort((row_key, -similarities), axis=-1)
    return (np.take_along_axis(indices, order, axis=1),
            np.take_along_axis(similarities, order, axis=1))
