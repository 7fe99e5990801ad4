"""IVF / IVF-PQ indexes: build with recall on build, search, refusals; FAISS missing."""

import json
import os
import shutil
import sys

import numpy as np
import pytest

from cvnet.jetson.cli import main
from cvnet.jetson.match import match
from cvnet.jetson.store import IndexRow, StoreError, write_chunk
from cvnet.jetson.topk import normalize_rows
from tests.jetson.stores import make_store

pytestmark = pytest.mark.device


def clustered(count, dim, clusters, seed, spread=0.3):
    """Unit rows around ``clusters`` random centres (identities), as a ReID gallery looks."""
    rng = np.random.RandomState(seed)
    centres = normalize_rows(rng.randn(clusters, dim).astype(np.float32))
    rows = centres[rng.randint(0, clusters, count)]
    noise = (spread / np.sqrt(dim) * rng.randn(count, dim)).astype(np.float32)
    return normalize_rows(rows + noise)


@pytest.fixture()
def folders(tmp_path):
    pytest.importorskip("faiss")
    data = clustered(1200, 32, 40, seed=0)
    gallery = make_store(str(tmp_path / "g"), data[:1000], chunk=128, weights_sha256="w" * 64)
    queries = make_store(str(tmp_path / "q"), data[1000:1030], weights_sha256="w" * 64)
    return gallery, queries, str(tmp_path)


def _overlap(a, b):
    return np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)])


@pytest.mark.parametrize("kind", ["ivf-pq", "ivf-flat"])
def test_build_reports_recall_and_search_agrees_with_exact(folders, kind, capsys):
    gallery, queries, tmp = folders
    path = os.path.join(tmp, kind + ".faiss")
    assert main(["match", "--gallery", gallery, "--build-index", "--index-type", kind,
                 "--nlist", "16", "--pq-m", "8", "--nprobe", "4", "--recall-queries", "50",
                 "-o", path]) == 0
    report = json.loads(capsys.readouterr().out)
    with open(path + ".json") as handle:
        sidecar = json.load(handle)
    assert sidecar["kind"] == kind and sidecar["rows"] == 1000 and sidecar["nprobe"] == 4
    assert sidecar["model_hash"] == "a" * 64 and sidecar["weights_sha256"] == "w" * 64
    assert report["recall_at_10"] == sidecar["recall_at_10"] >= 0.9
    assert 0 <= sidecar["recall_at_10_no_rerank"] <= 1
    exact = match(queries, gallery, topk=10, backend="exact")
    approximate = match(queries, gallery, topk=10, index=path)
    assert approximate.backend == "index" and _overlap(exact.indices, approximate.indices) >= 0.9
    same = approximate.indices == exact.indices  # re-ranked: exact scores where they agree
    np.testing.assert_allclose(approximate.similarities[same], exact.similarities[same],
                               atol=1e-6)
    assert set(approximate.gallery_rows) == set(approximate.indices[approximate.indices >= 0])
    without = match(queries, gallery, topk=10, index=path, rerank=0, nprobe=16)
    assert without.indices.shape == (30, 10)


def test_an_index_refuses_another_gallery_or_model(folders):
    gallery, queries, tmp = folders
    path = os.path.join(tmp, "g.faiss")
    assert main(["match", "--gallery", gallery, "--query", queries, "--build-index",
                 "--nlist", "8", "-o", path]) == 0
    other = make_store(os.path.join(tmp, "other"), clustered(1000, 32, 40, seed=1),
                       model_hash="b" * 64, weights_sha256="w" * 64)
    with pytest.raises(StoreError, match="model_hash bbbbbbbbbbbb.*rebuild it"):
        match(queries, other, index=path)
    stranger = make_store(os.path.join(tmp, "stranger"), clustered(5, 32, 2, seed=2),
                          weights_sha256="x" * 64)
    with pytest.raises(StoreError, match="different weights"):
        match(stranger, gallery, index=path, force=True)
    grown = os.path.join(tmp, "grown")
    shutil.copytree(gallery, grown)
    write_chunk(grown, 8, clustered(1, 32, 1, seed=3), [IndexRow("new.png", "ok", 1000, "", "")])
    with pytest.raises(StoreError, match="covers 1000 gallery rows.*1001"):
        match(queries, grown, index=path)
    assert main(["match", "--query", queries, "--gallery", other, "--index", path]) == 1


def test_without_faiss_exact_search_runs_and_faiss_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss fails
    rng = np.random.RandomState(1)
    gallery = make_store(str(tmp_path / "g"), rng.randn(20, 8).astype(np.float32))
    queries = make_store(str(tmp_path / "q"), rng.randn(2, 8).astype(np.float32))
    assert match(queries, gallery, topk=2).backend == "exact"
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        match(queries, gallery, backend="faiss")
    assert main(["match", "--gallery", gallery, "--build-index"]) == 1
    assert main(["match", "--gallery", gallery]) == 1  # no --query


def test_build_recall_on_gallery_rows_is_that_of_fresh_queries(tmp_path):
    """Review #18-4: gallery rows as queries found themselves, inflating the build's recall."""
    pytest.importorskip("faiss")
    from cvnet.jetson.ann_index import AnnIndex, build_index, recall_at
    from cvnet.jetson.store import Store
    from cvnet.jetson.topk import topk_exact

    rng = np.random.RandomState(0)
    folder = make_store(str(tmp_path / "g"), normalize_rows(rng.randn(4000, 32).astype(
        np.float32)), chunk=1024, failed=False)
    fresh = normalize_rows(rng.randn(500, 32).astype(np.float32))
    path = str(tmp_path / "g.faiss")
    with Store(folder) as gallery:  # few lists visited, no rerank: a recall well below 1
        built = build_index(gallery, path, kind="ivf-flat", nlist=16, nprobe=2, rerank=0,
                            recall_queries=500)
        with AnnIndex.load(path) as ann:
            exact, _ = topk_exact(fresh, gallery, 10)
            approximate, _ = ann.search(fresh, 10, gallery)
    assert abs(built["recall_at_10"] - recall_at(exact, approximate)) < 0.02
    assert "own row left out" in built["recall_method"]


def test_an_index_of_another_gallery_of_the_same_model_and_length_is_refused(folders):
    """Review #18-5: model hash and row count alone accepted another gallery's index."""
    gallery, queries, tmp = folders
    path = os.path.join(tmp, "g.faiss")
    assert main(["match", "--gallery", gallery, "--build-index", "--nlist", "8", "-o",
                 path]) == 0
    twin = make_store(os.path.join(tmp, "twin"), clustered(1000, 32, 40, seed=1), chunk=128,
                      weights_sha256="w" * 64)
    with pytest.raises(StoreError, match="another gallery than .*twin.*rebuild it"):
        match(queries, twin, index=path)
    copy = os.path.join(tmp, "copy")
    shutil.copytree(gallery, copy)  # a copy is the same gallery
    assert match(queries, copy, index=path).backend == "index"


def test_an_index_at_a_non_utf8_path_loads(folders):
    """Review #18-6: faiss.read_index takes char *, so such a path built but did not load."""
    gallery, queries, tmp = folders
    path = os.fsdecode(os.path.join(os.fsencode(tmp), b"idx\xff.faiss"))
    assert main(["match", "--gallery", gallery, "--build-index", "--nlist", "8", "-o",
                 path]) == 0
    assert match(queries, gallery, topk=3, index=path).indices.shape == (30, 3)
