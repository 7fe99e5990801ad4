"""Thresholds that travel with the model: cvnet-eval --write-thresholds records them in the
sidecar, cvnet-embed carries them into its stores, cvnet-match --threshold auto decides with the
one of the query-to-gallery direction, and every way of getting it wrong is refused."""

import csv
import json
import logging
import os
import shutil

import pytest

from cvnet.core.artifact import read_sidecar
from cvnet.core.fileio import sha256_file
from cvnet.core.synth import generate_dataset
from cvnet.core.thresholds import (CHECKPOINT_SIDECAR_FORMAT, SIDECAR_KEY, ThresholdError,
                                   carried_thresholds, check_block, direction_of,
                                   read_thresholds, select_threshold, thresholds_block,
                                   write_thresholds)
from cvnet.jetson.cli import main
from cvnet.jetson.store import read_meta, write_meta
from tests.fixtures import TINY_ONNX, copy_sidecar

pytestmark = pytest.mark.device

POINTS = {"A2G": {"eer": 0.2, "points": [{"fpr_target": 0.1, "threshold": 0.5, "tpr": 0.7,
                                          "fpr": 0.09, "resolved": True}]}}


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A model evaluated with --write-thresholds, its aerial and ground test crops embedded."""
    root = tmp_path_factory.mktemp("thresholds")
    data = generate_dataset(str(root / "synth"), ids=12, images_per_view=2, size=64, seed=2)
    model = str(root / "cvnet_tiny.onnx")
    shutil.copy(TINY_ONNX, model)
    copy_sidecar(model)
    report = str(root / "eval.json")
    assert main(["eval", model, "--data", data, "--fpr", "1e-1,1e-2", "--write-thresholds",
                 "--json-out", report, "--bootstrap", "50"]) == 0
    for view in "AG":
        folder = root / view
        folder.mkdir()
        with open(data) as handle:
            for row in csv.DictReader(handle):
                if row["split"] == "test" and row["view"] == view:
                    shutil.copy(os.path.join(str(root / "synth"), row["path"]), str(folder))
        assert main(["embed", "--engine", model, "--images", str(folder), "-o",
                     str(root / (view + "-store")), "--view", view]) == 0
    with open(report) as handle:
        return {"root": root, "model": model, "data": data, "report": json.load(handle),
                "aerial": str(root / "A-store"), "ground": str(root / "G-store")}


def test_the_sidecar_records_the_operating_points(flow):
    metadata = read_sidecar(flow["model"])  # still a valid sidecar
    block = metadata.extra[SIDECAR_KEY]
    assert block["model_hash"] == metadata.weights_sha256
    assert sorted(block["directions"]) == ["A2G", "G2A"]
    assert block["directions"] == flow["report"]["operating_points"]
    assert [p["fpr_target"] for p in block["directions"]["A2G"]["points"]] == [0.1, 0.01]
    assert flow["report"]["thresholds_file"] == flow["model"] + ".json"
    assert block["measured"]["model_file"] == "cvnet_tiny.onnx"


def test_embed_carries_them_and_the_view_into_the_store(flow):
    sidecar = read_sidecar(flow["model"]).extra[SIDECAR_KEY]
    for folder, view in ((flow["aerial"], "A"), (flow["ground"], "G")):
        meta = read_meta(folder)
        assert meta["view"] == view and meta[SIDECAR_KEY] == sidecar


@pytest.mark.parametrize("query, gallery, direction", [("aerial", "ground", "A2G"),
                                                       ("ground", "aerial", "G2A")])
def test_match_auto_decides_with_the_directions_threshold(flow, tmp_path, caplog, query,
                                                          gallery, direction):
    out, answers = str(tmp_path / "m.csv"), str(tmp_path / "answers.json")
    with caplog.at_level(logging.INFO):
        assert main(["match", "--query", flow[query], "--gallery", flow[gallery], "--topk", "3",
                     "--threshold", "auto", "--fpr", "1e-1", "-o", out,
                     "--json-out", answers]) == 0
    point = read_sidecar(flow["model"]).extra[SIDECAR_KEY]["directions"][direction]["points"][0]
    assert "--threshold auto: {} threshold {:.6f} (FPR 0.1".format(
        direction, point["threshold"]) in caplog.text
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 * 3  # every top-k row kept, labelled
    for row in rows:
        assert row["direction"] == direction and float(row["fpr"]) == 0.1
        assert float(row["threshold"]) == pytest.approx(point["threshold"], abs=1e-6)
        expected = "match" if float(row["similarity"]) >= point["threshold"] - 1e-6 else \
            "no-match"
        assert row["decision"] == expected or abs(float(row["similarity"]) -
                                                  point["threshold"]) < 1e-6
    with open(answers) as handle:
        result = json.load(handle)
    assert result["threshold"]["direction"] == direction
    assert result["threshold"]["threshold"] == point["threshold"]
    top = {row["query"]: row for row in rows if row["rank"] == "1"}
    assert len(result["queries"]) == 12
    for answer in result["queries"]:
        assert answer["decision"] == top[answer["query"]]["decision"]
        assert answer["gallery"] == top[answer["query"]]["gallery"]
    assert result["counts"]["match"] + result["counts"]["no-match"] == 12


def _refusal(args, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(["match"] + args + ["--threshold", "auto"]) == 1
    return caplog.text


def test_refusals_name_the_fix(flow, tmp_path, caplog):
    # No thresholds: a model that was never evaluated with --write-thresholds.
    bare = str(tmp_path / "bare.onnx")
    shutil.copy(TINY_ONNX, bare)
    copy_sidecar(bare)
    images = str(flow["root"] / "A")
    assert main(["embed", "--engine", bare, "--images", images, "-o", str(tmp_path / "bare"),
                 "--view", "A"]) == 0
    text = _refusal(["--query", str(tmp_path / "bare"), "--gallery", str(tmp_path / "bare")],
                    caplog)
    assert "records no thresholds" in text and "--write-thresholds" in text
    # Thresholds of another model.
    other = str(tmp_path / "other")
    shutil.copytree(flow["ground"], other)
    meta = read_meta(other)
    meta[SIDECAR_KEY] = dict(meta[SIDECAR_KEY], model_hash="f" * 64)
    write_meta(other, meta)
    caplog.clear()
    assert "measured on another model" in _refusal(["--query", flow["aerial"], "--gallery",
                                                    other], caplog)
    # No view: the direction is unknown, unless --direction names it.
    unviewed = str(tmp_path / "unviewed")
    assert main(["embed", "--engine", flow["model"], "--images", images, "-o", unviewed]) == 0
    caplog.clear()
    text = _refusal(["--query", unviewed, "--gallery", flow["ground"]], caplog)
    assert "view direction is unknown" in text and "--view A|G" in text
    assert main(["match", "--query", unviewed, "--gallery", flow["ground"], "--threshold",
                 "auto", "--direction", "A2G", "--fpr", "1e-2", "-o", str(tmp_path / "m.csv")]) == 0
    # A direction or an FPR that was not measured.
    caplog.clear()
    text = _refusal(["--query", flow["aerial"], "--gallery", flow["aerial"]], caplog)
    assert "no thresholds for direction A2A (measured: A2G, G2A)" in text
    caplog.clear()
    text = _refusal(["--query", flow["aerial"], "--gallery", flow["ground"], "--fpr", "1e-3"],
                    caplog)
    assert "no threshold for FPR 1e-03 in direction A2G (measured: 0.1, 1e-02)" in text
    # --json-out and --direction only mean something with auto.
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["match", "--query", flow["aerial"], "--gallery", flow["ground"],
                     "--threshold", "0.5", "--json-out", str(tmp_path / "a.json")]) == 1
    assert "go with --threshold auto" in caplog.text


def test_an_artifact_without_a_sidecar_is_refused(tmp_path):
    model = str(tmp_path / "m.onnx")
    shutil.copy(TINY_ONNX, model)
    block = thresholds_block(POINTS, model_hash="a" * 64, model_file=model, backend="x",
                             dataset="d")
    with pytest.raises(ThresholdError, match="has no sidecar .* cvnet-export"):
        write_thresholds(model, block)
    assert not os.path.exists(model + ".json")


def test_a_checkpoint_gets_a_small_sidecar(tmp_path, caplog):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    digest = sha256_file(str(checkpoint))
    block = thresholds_block(POINTS, model_hash=digest, model_file=str(checkpoint),
                             backend="pytorch", dataset="d")
    path = write_thresholds(str(checkpoint), block)
    assert path == str(checkpoint) + ".json"
    with open(path) as handle:
        data = json.load(handle)
    assert data["format"] == CHECKPOINT_SIDECAR_FORMAT and data["file"] == "model.pt"
    assert read_thresholds(str(checkpoint)) == block
    assert carried_thresholds(str(checkpoint), None, digest) == block
    with caplog.at_level(logging.WARNING):
        assert carried_thresholds(str(checkpoint), None, "b" * 64) is None
    assert "measured on another model" in caplog.text
    (tmp_path / "other.pt.json").write_text(u'{"format": "something else"}')
    with pytest.raises(ThresholdError, match="not a cvnet checkpoint sidecar"):
        write_thresholds(str(tmp_path / "other.pt"), block)


def test_selection_and_validation():
    block = thresholds_block(POINTS, model_hash="a" * 64, model_file="m.onnx", backend="x",
                             dataset="d")
    chosen = select_threshold(block, direction="A2G", fpr=0.1, model_hash="a" * 64, source="s")
    assert (chosen.threshold, chosen.tpr, chosen.resolved) == (0.5, 0.7, True)
    assert chosen.describe() == "A2G threshold 0.500000 (FPR 0.1, TPR 70.0% measured)"
    assert direction_of("A", "G") == "A2G" and direction_of("G", None) is None
    for broken, message in (({"format": "x"}, "format"), (dict(block, version=9), "version"),
                            (dict(block, directions={"up": {}}), "unknown direction"),
                            (dict(block, directions={"A2G": {"points": [{}]}}), "no valid")):
        with pytest.raises(ThresholdError, match=message):
            check_block(broken, "meta.json")


def test_thresholds_of_an_onnx_travel_on_to_the_plan_built_from_it(flow):
    from cvnet.core.artifact import metadata_from_dict, sidecar_text
    from cvnet.engines.metadata import plan_sidecar
    from tests.engines.test_metadata import INFO

    onnx = read_sidecar(flow["model"])
    plan = metadata_from_dict(json.loads(sidecar_text(plan_sidecar(onnx, "cvnet_tiny.plan",
                                                                   INFO))))
    block = read_thresholds(str(flow["root"] / "cvnet_tiny.plan"), plan)
    assert block == onnx.extra[SIDECAR_KEY]
    assert carried_thresholds("cvnet_tiny.plan", plan, plan.weights_sha256) == block
