"""cpu_paths' report: agreement with the first path, each path embedded once, none without
verification images."""

import numpy as np
import pytest

from cvnet.benchmarks.cpu_paths import Path, report_rows, time_path

pytestmark = pytest.mark.device


def _path(name, scale, embedded):
    def embed(images):
        embedded.append(name)
        return np.random.RandomState(0).randn(len(images), 8).astype(np.float32) * scale

    return Path(name, lambda batch: batch, embed, lambda images: images, lambda: None)


def test_rows_compare_with_the_first_path_embedding_each_once():
    embedded = []
    paths = [_path("reference", 1.0, embedded), _path("scaled", 3.0, embedded)]
    rows = report_rows(paths, {"reference": {1: [1.0, 3.0, 2.0]}, "scaled": {1: [4.0]}}, 4)
    assert embedded == ["reference", "scaled"]
    assert [row["images_per_s"] for row in rows] == [{"1": 2.0}, {"1": 4.0}]
    assert all(row["max_one_minus_cosine"] < 1e-6 and row["top5_agreement"] == 1.0
               for row in rows)


def test_no_verification_images_means_no_figures_and_no_embedding():
    embedded = []
    rows = report_rows([_path("only", 1.0, embedded)], {"only": {8: [5.0]}}, 0)
    assert embedded == []
    assert rows[0]["max_one_minus_cosine"] is None and rows[0]["top5_agreement"] is None


def test_time_path_counts_images_per_second():
    calls = []
    speed = time_path(Path("p", calls.append, None, None, None), np.zeros((4, 1)), 0.0)
    assert speed > 0 and len(calls) == 3  # one warm-up, at least two timed
