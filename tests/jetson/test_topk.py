"""The running top-k and both exact backends against a brute-force top-k, ties included."""

import numpy as np
import pytest

from cvnet.jetson.match import match
from cvnet.jetson.store import Store
from cvnet.jetson.topk import TopK, normalize_rows, order_lists, topk_exact, topk_faiss
from tests.jetson.stores import make_store

pytestmark = pytest.mark.device


def brute_force(scores, k):
    """Rows by score down, then row up: (Nq, k) indices and scores, -1 / -inf past the end."""
    count, width = scores.shape
    order = np.lexsort((np.tile(np.arange(width), (count, 1)), -scores), axis=-1)[:, :k]
    indices = np.full((count, k), -1, np.int64)
    values = np.full((count, k), -np.inf, np.float32)
    indices[:, :order.shape[1]] = order
    values[:, :order.shape[1]] = np.take_along_axis(scores, order, axis=1)
    return indices, values


def test_the_heap_merge_equals_brute_force_with_ties_at_the_kth_place():
    """Scores on a coarse grid: many ties, across blocks and at the cut."""
    rng = np.random.RandomState(0)
    scores = rng.randint(0, 6, size=(9, 130)).astype(np.float32) / 5
    for k in (1, 3, 10, 200):
        for width in (1, 7, 64, 130):
            top = TopK(len(scores), k)
            for start in range(0, scores.shape[1], width):
                top.push(np.ascontiguousarray(scores[:, start:start + width].T), start)
            indices, values = brute_force(scores, k)
            np.testing.assert_array_equal(top.indices, indices, err_msg="k={} block={}".format(
                k, width))
            np.testing.assert_array_equal(top.similarities, values)


@pytest.mark.parametrize("width", [100, 30])
def test_nan_rows_never_push_real_matches_out(width):
    """Review #18-2: a block with >= k NaN rows made its k-th best NaN; every real row lost."""
    rng = np.random.RandomState(1)
    scores = rng.randn(3, 100).astype(np.float32)
    scores[:, rng.permutation(100)[:20]] = np.nan  # 20 NaN gallery rows of 100
    top = TopK(len(scores), 5)
    for start in range(0, 100, width):
        top.push(np.ascontiguousarray(scores[:, start:start + width].T), start)
    finite = np.where(np.isnan(scores), -np.inf, scores)
    indices, values = brute_force(finite, 5)
    np.testing.assert_array_equal(top.indices, indices)
    np.testing.assert_array_equal(top.similarities, values)
    few = TopK(1, 90)  # more places than finite rows: the NaN rows are not listed
    few.push(np.ascontiguousarray(scores[:1].T), 0)
    assert sorted(few.indices[0][few.indices[0] >= 0]) == list(np.flatnonzero(
        np.isfinite(scores[0])))


def test_blocks_in_any_order_and_query_slices_merge_the_same():
    rng = np.random.RandomState(1)
    scores = rng.randint(0, 4, size=(6, 40)).astype(np.float32)
    top = TopK(6, 5)
    for start in (30, 0, 20, 10):  # out of order
        top.push(scores[:3, start:start + 10].T, start, first_query=0)
        top.push(scores[3:, start:start + 10].T, start, first_query=3)
    np.testing.assert_array_equal(top.indices, brute_force(scores, 5)[0])
    lists = np.array([[4, 2, -1], [1, 0, 3]])
    values = np.array([[0.5, 0.5, 9.0], [0.1, 0.2, 0.2]], np.float32)
    indices, ordered = order_lists(lists, values)
    assert indices.tolist() == [[2, 4, -1], [0, 3, 1]] and np.isneginf(ordered[0, 2])


def _gallery(tmp_path, dtype=np.float32):
    rng = np.random.RandomState(2)
    gallery = rng.randn(300, 12).astype(np.float32)
    gallery[150] = gallery[7]  # an exact duplicate: a tie the lower row must win
    gallery[151] = 2 * gallery[7]  # the same direction: the same cosine, to the last bit or so
    return gallery.astype(dtype), make_store(str(tmp_path / "g"), gallery.astype(dtype),
                                             chunk=37)


@pytest.mark.parametrize("block_rows", [1, 16, 4096])
def test_exact_search_equals_brute_force(tmp_path, block_rows):
    gallery, folder = _gallery(tmp_path)
    queries = normalize_rows(np.concatenate([gallery[[7]], np.random.RandomState(3).randn(
        5, 12).astype(np.float32)]))
    scores = queries.dot(normalize_rows(gallery.copy()).T)
    with Store(folder) as store:
        indices, values = topk_exact(queries, store, 4, block_rows)
    expected, expected_values = brute_force(scores, 4)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(values, expected_values, rtol=1e-6)
    assert indices[0, :2].tolist() == [7, 150]


def test_faiss_blocks_give_the_same_ordered_lists(tmp_path):
    pytest.importorskip("faiss")
    gallery, folder = _gallery(tmp_path)
    queries = normalize_rows(np.concatenate([gallery[[7, 150]], np.random.RandomState(4).randn(
        30, 12).astype(np.float32)]))
    with Store(folder) as store:
        exact = topk_exact(queries, store, 6, 50)
        for block_rows in (4, 50, 4096):
            fast = topk_faiss(queries, store, 6, block_rows)
            np.testing.assert_array_equal(fast[0], exact[0])
            np.testing.assert_allclose(fast[1], exact[1], atol=1e-5)
        # k beyond the gallery: padded like exact search.
        fast = topk_faiss(queries[:2], store, 310, 128)
        np.testing.assert_array_equal(fast[0], topk_exact(queries[:2], store, 310)[0])


def test_float16_storage_matches_like_float32(tmp_path):
    """A float16 store is widened block by block: the lists agree with float32 (here: every
    top-10 of random 64-d rows), the scores within float16's rounding."""
    rng = np.random.RandomState(5)
    gallery = normalize_rows(rng.randn(500, 64).astype(np.float32))
    queries = gallery[:20] + 0.1 * rng.randn(20, 64).astype(np.float32)  # noise of norm 0.8
    make_store(str(tmp_path / "g32"), gallery)
    make_store(str(tmp_path / "g16"), gallery.astype(np.float16))
    make_store(str(tmp_path / "q"), queries.astype(np.float16))
    full = match(str(tmp_path / "q"), str(tmp_path / "g32"), topk=10, backend="exact")
    half = match(str(tmp_path / "q"), str(tmp_path / "g16"), topk=10, backend="exact")
    assert (full.indices[:, 0] == np.arange(20)).all()
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(full.indices, half.indices)])
    assert overlap >= 0.95
    np.testing.assert_allclose(half.similarities, full.similarities, atol=2e-3)
    with Store(str(tmp_path / "g16")) as store:
        assert store.chunks[0].dtype == "float16"


def test_float16_storage_in_the_faiss_backend_and_an_index(tmp_path):
    pytest.importorskip("faiss")
    from cvnet.jetson.ann_index import build_index

    rng = np.random.RandomState(6)
    gallery = normalize_rows(rng.randn(600, 32).astype(np.float32)).astype(np.float16)
    make_store(str(tmp_path / "g16"), gallery, chunk=50)
    make_store(str(tmp_path / "q"), gallery[:12])
    exact = match(str(tmp_path / "q"), str(tmp_path / "g16"), topk=5, backend="exact")
    fast = match(str(tmp_path / "q"), str(tmp_path / "g16"), topk=5, backend="faiss")
    np.testing.assert_array_equal(fast.indices, exact.indices)
    assert (exact.indices[:, 0] == np.arange(12)).all()
    index = str(tmp_path / "g16.faiss")
    with Store(str(tmp_path / "g16")) as store:
        # every list visited and every row re-scored: the float16 rows read back exactly
        report = build_index(store, index, nlist=4, rerank=600, recall_queries=50)
    assert report["recall_at_10"] == 1.0
    found = match(str(tmp_path / "q"), str(tmp_path / "g16"), topk=5, index=index, nprobe=4)
    np.testing.assert_array_equal(found.indices, exact.indices)
