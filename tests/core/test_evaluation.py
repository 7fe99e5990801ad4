"""Evaluation of an embedder on a dataset: plumbing, failures, trials, report and picture."""

import os

import cv2
import numpy as np
import pytest

from cvnet.core.datasets import evaluation_splits, load_dataset
from cvnet.core.evaluation import embed_paths, evaluate, format_report, jsonable, ranked_lists_image

pytestmark = pytest.mark.device

COLOURS = [(0, 0, 200), (0, 200, 0), (200, 0, 0), (0, 200, 200)]  # one per identity, BGR


def mean_colour(images):
    """A deterministic embedder: the mean BGR colour of each image."""
    return np.stack([image.reshape(-1, 3).mean(0) for image in images]).astype(np.float32)


def _write_dataset(folder, broken=None):
    rows = ["path,vehicle_id,camera,view,split"]
    for vid, colour in enumerate(COLOURS):
        for view, camera in (("A", "A0"), ("G", "G0"), ("G", "G1")):
            name = "{}_{}_{}.png".format(vid, view, camera)
            image = np.full((24, 24, 3), colour, np.uint8)
            image[:4] = 255 if view == "A" else 0  # views differ a little
            cv2.imwrite(os.path.join(str(folder), name), image)
            rows.append("{},{},{},{},test".format(name, vid, camera, view))
        train_name = "train_{}.png".format(vid)
        cv2.imwrite(os.path.join(str(folder), train_name), np.full((24, 24, 3), 90, np.uint8))
        rows.append("{},{},G0,G,train".format(train_name, vid + 10))
    if broken:
        with open(os.path.join(str(folder), broken), "wb") as handle:
            handle.write(b"not an image")
    path = os.path.join(str(folder), "dataset.csv")
    with open(path, "w") as handle:
        handle.write("\n".join(rows) + "\n")
    return path


def test_colour_identities_are_retrieved_perfectly_across_views(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path))
    report = evaluate(mean_colour, dataset, ["A2G", "G2A"], max_rank=4)
    a2g = report.metrics["A2G"]
    assert a2g["mAP"] == pytest.approx(1.0) and a2g["rank1"] == pytest.approx(1.0)
    assert (a2g["num_query"], a2g["num_gallery"]) == (4, 8)
    assert report.metrics["G2A"]["num_query"] == 8 and report.failed == []
    assert report.embedded.embeddings.shape == (12, 3)  # every test image embedded once


def test_unreadable_images_are_reported_and_left_out(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path, broken="0_A_A0.png"))
    report = evaluate(mean_colour, dataset, ["A2G"], max_rank=4)
    assert [os.path.basename(path) for path, _ in report.failed] == ["0_A_A0.png"]
    assert "not a decodable image" in report.failed[0][1]
    assert report.metrics["A2G"]["num_query"] == 3
    assert "1 images could not be decoded" in format_report(report)


def test_embedder_returning_wrong_row_count_is_an_error(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path))
    paths = [r.path for r in dataset.records][:3]
    with pytest.raises(ValueError, match="returned 1 rows for 3 images"):
        embed_paths(lambda images: np.zeros((1, 3), np.float32), paths)


def test_report_table_and_json(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path))
    report = evaluate(mean_colour, dataset, ["A2G"], max_rank=4)
    table = format_report(report, "colours")
    assert "| A2G | 100.0 | 100.0 |" in table and table.startswith("## colours")
    data = jsonable(report)
    assert set(data) == {"metrics", "failed", "seconds"} and data["metrics"]["A2G"]["mAP"] == 1.0


def test_ranked_lists_picture_has_a_row_per_query(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path))
    report = evaluate(mean_colour, dataset, ["A2G"], max_rank=4)
    split = evaluation_splits(dataset, "A2G")[0]
    picture = ranked_lists_image(report.embedded, split, num_queries=3, topk=2)
    assert picture.dtype == np.uint8 and picture.shape[0] == 3 * (128 + 6)
    assert picture.shape[1] == 3 * 128 + 12


def test_intervals_and_operating_points_in_the_report(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path))
    report = evaluate(mean_colour, dataset, ["A2G", "all"], max_rank=4, bootstrap=200,
                      bootstrap_seed=1, fprs=(0.1, 1e-3))
    a2g = report.metrics["A2G"]
    assert a2g["mAP_ci95"] == [1.0, 1.0] and a2g["rank1_ci95"] == [1.0, 1.0]  # all perfect
    points = report.operating_points["A2G"]
    # 4 aerial queries x 8 ground images: 2 matches each, 6 different identities each.
    assert (points["positives"], points["negatives"], points["excluded"]) == (8, 24, 0)
    assert points["eer"] == 0.0 and points["auc"] == 1.0
    assert [p["resolved"] for p in points["points"]] == [True, False]
    # "all" ranks the 12 images against themselves: the same-id same-camera pairs (each image
    # with itself, and 0_G_G0 with nothing else) are left out, as in the ranking.
    everything = report.operating_points["all"]
    assert everything["excluded"] == 12 and everything["positives"] == 4 * 6
    assert everything["negatives"] == 12 * 12 - 4 * 9
    table = format_report(report, "colours")
    assert "| A2G | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in table
    assert "95% bootstrap interval over queries (200 resamples, seed 1)" in table
    assert "| A2G | 8 | 24 | 0.00 | 1.0000 |" in table
    assert "TPR @ FPR 1e-03 (threshold)" in table and "*: too few negative pairs" in table
    assert "same identity under the same camera" in table
    data = jsonable(report)
    assert data["settings"]["bootstrap"]["resamples"] == 200
    assert data["operating_points"]["A2G"]["points"][0]["fpr_target"] == 0.1


def test_trials_keep_mean_and_std_without_a_bootstrap(tmp_path):
    dataset = load_dataset(_write_dataset(tmp_path))
    report = evaluate(mean_colour, dataset, ["A2G"], max_rank=4, bootstrap=100)
    assert "mAP_ci95" in report.metrics["A2G"]
    trials = report._replace(metrics={"all": {"mAP": 0.5, "mAP_std": 0.1, "rank1": 0.4,
                                              "rank1_std": 0.2, "num_query": 3,
                                              "num_gallery": 2}})
    table = format_report(trials)
    assert "| all | 50.0 +- 10.0 | 40.0 +- 20.0 |" in table
    assert "standard deviation over the seeded gallery draws" in table
