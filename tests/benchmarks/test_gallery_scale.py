"""cvnet.benchmarks.gallery_scale: its stores, its agreement figures and its clustered data."""

import json
import os

import numpy as np
import pytest

from cvnet.benchmarks.gallery_scale import (PER_IDENTITY, agreement, gallery_rows, main,
                                            query_rows)
from cvnet.jetson.store import INDEX_FILE, Store

pytestmark = pytest.mark.device


def test_clustered_queries_find_their_identity_first():
    """The clustered stand-in has the neighbour structure an index relies on: a query's nearest
    gallery rows are its identity's images, well apart from the rest (random unit vectors have
    no such gap)."""
    gallery = gallery_rows("clustered", 0, 4000, 64, seed=1)
    queries = query_rows("clustered", 50, 4000, 64, seed=1)
    scores = queries @ gallery.T
    nearest = np.argsort(-scores, axis=1)[:, :PER_IDENTITY]
    identities = nearest // PER_IDENTITY
    assert (identities == identities[:, :1]).mean() > 0.9
    ranked = -np.sort(-scores, axis=1)
    assert (ranked[:, PER_IDENTITY - 1] - ranked[:, PER_IDENTITY]).mean() > 0.1
    random = query_rows("random", 50, 4000, 64, seed=1) @ gallery_rows(
        "random", 0, 4000, 64, seed=1).T
    ranked = -np.sort(-random, axis=1)
    assert (ranked[:, PER_IDENTITY - 1] - ranked[:, PER_IDENTITY]).mean() < 0.02
    np.testing.assert_array_equal(gallery_rows("clustered", 0, 4000, 64, seed=1), gallery)
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, rtol=1e-5)


def test_agreement_counts_identical_lists_and_recall():
    reference = {"q1": ["a", "b"], "q2": ["c", "d"]}
    assert agreement(reference, reference) == {"identical_lists": 1.0, "recall": 1.0}
    assert agreement(reference, {"q1": ["b", "a"], "q2": ["c", "x"]}) == {
        "identical_lists": 0.0, "recall": 0.75}


def test_a_small_run_writes_stores_and_reports_every_backend(tmp_path, capsys):
    out = str(tmp_path / "run.json")
    assert main(["--rows", "1500", "--dim", "16", "--queries", "20", "--data", "clustered",
                 "--backends", "exact", "--fp16", "--repeats", "1", "--chunk-size", "256",
                 "--workdir", str(tmp_path / "work"), "--keep", "--json-out", out]) == 0
    with open(out) as handle:
        runs = {run["label"]: run for run in json.load(handle)["runs"]}
    assert set(runs) == {"new exact", "new exact, float16 gallery"}
    assert runs["new exact"]["identical_lists"] == 1.0
    assert runs["new exact, float16 gallery"]["recall"] >= 0.95
    assert all(run["peak_rss_mib"] > 0 and run["seconds"] > 0 for run in runs.values())
    gallery = str(tmp_path / "work" / "clustered-1500x16" / "g32")
    assert os.path.exists(os.path.join(gallery, INDEX_FILE))  # the store's own writer
    with Store(gallery) as store:
        assert store.size == 1500 and len(store.chunks) == 6
    assert "| 1,500 | new exact |" in capsys.readouterr().out
