"""Dataset loaders, protocols and the checks on broken input, with tiny on-the-fly folders."""

import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cvnet.core.datasets import (ImageRecord, QueryGallery, canonical_id, check_images,
                                 crossview_split, detect_format, evaluation_splits, identity_labels,
                                 load_csv, load_dataset, load_vehicleid, load_veri,
                                 standard_protocols, vehicleid_split, write_csv)
from cvnet.core.errors import ConfigError, DatasetError
from cvnet.core.metrics import evaluate_rank

pytestmark = pytest.mark.device

HEADER = "path,vehicle_id,camera,view,split\n"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _png(path, value=128):
    """Writes a small PNG (through open(): cv2.imwrite crashes on names that are not UTF-8)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    ok, data = cv2.imencode(".png", np.full((6, 8, 3), value, np.uint8))
    assert ok
    with open(str(path), "wb") as handle:
        handle.write(data.tobytes())
    return str(path)


def _csv(folder, rows, header=HEADER, create_images=True):
    """Writes dataset.csv in folder; rows are (path, id, camera, view, split) tuples."""
    if create_images:
        for row in rows:
            _png(folder / row[0])
    path = folder / "dataset.csv"
    path.write_text(header + "".join(",".join(row) + "\n" for row in rows))
    return str(path)


# A cross-view test split: ids 1-2 for training, ids 3-4 for testing, both views each.
CROSSVIEW = [
    ("img/t1a.png", "0001", "A0", "A", "train"), ("img/t1g.png", "1", "G0", "G", "train"),
    ("img/t2a.png", "2", "A1", "a", "train"), ("img/t2g.png", "2", "G1", "G", "train"),
    ("img/q3a.png", "3", "A0", "A", "test"), ("img/q3g.png", "3", "G0", "G", "test"),
    ("img/q3h.png", "3", "G1", "G", "test"), ("img/q4a.png", "4", "A2", "A", "test"),
    ("img/q4g.png", "4", "G2", "G", "test"), ("img/q4h.png", "4", "G0", "G", "test"),
]


def test_csv_loads_resolved_paths_and_canonical_ids(tmp_path):
    dataset = load_dataset(_csv(tmp_path, CROSSVIEW))
    assert dataset.kind == "csv" and dataset.source == str(tmp_path.resolve() / "dataset.csv")
    first = dataset.records[0]
    assert first == ImageRecord(str(tmp_path.resolve() / "img" / "t1a.png"), "1", "A0", "A",
                                "train")
    assert dataset.records[2].view == "A"  # "a" normalised
    assert dataset.counts() == {"train": 4, "test": 6}
    assert identity_labels(dataset.split("train")) == {"1": 0, "2": 1}
    assert dataset.skipped == []


def test_csv_extra_columns_are_ignored_and_header_is_case_insensitive(tmp_path):
    header = "Split,notes,VIEW,camera,path,vehicle_id\n"
    _png(tmp_path / "a.png")
    (tmp_path / "d.csv").write_text(header + "train,hello,G,c1,a.png,7\n")
    dataset = load_csv(str(tmp_path / "d.csv"))
    assert dataset.records[0][1:] == ("7", "c1", "G", "train")


def test_csv_missing_columns_lists_missing_and_found(tmp_path):
    path = _csv(tmp_path, [("a.png", "1", "c", "A", "train")], header="path,id,view,split\n")
    with pytest.raises(DatasetError, match=r"lacks the column\(s\) \['vehicle_id', 'camera'\]; "
                                           r"found \['path', 'id', 'view', 'split'\]"):
        load_csv(path)


@pytest.mark.parametrize("row, message", [
    (("a.png", "1", "c", "X", "train"), "line 3: unknown view 'X'"),
    (("a.png", "1", "c", "A", "val"), "line 3: unknown split 'val'"),
    (("a.png", "", "c", "A", "train"), "line 3: empty vehicle_id"),
    (("", "1", "c", "A", "train"), "line 3: empty path"),
])
def test_csv_bad_values_name_the_line(tmp_path, row, message):
    path = _csv(tmp_path, [("ok.png", "1", "c", "A", "train"), row], create_images=False)
    with pytest.raises(DatasetError, match=message):
        load_csv(path)


def test_csv_short_row_and_empty_file(tmp_path):
    (tmp_path / "short.csv").write_text(HEADER + "a.png,1\n")
    with pytest.raises(DatasetError, match="line 2: 2 field"):
        load_csv(str(tmp_path / "short.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="is empty"):
        load_csv(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text(HEADER)
    with pytest.raises(DatasetError, match="no image rows"):
        load_csv(str(tmp_path / "header.csv"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_csv(str(tmp_path / "nope.csv"))


def test_csv_inconsistent_rows_are_errors(tmp_path):
    two_ids = _csv(tmp_path, [("a.png", "1", "c", "A", "query"), ("a.png", "2", "c", "A",
                                                                  "gallery")])
    with pytest.raises(DatasetError, match="line 3: a.png has vehicle_id '2', but line 2"):
        load_csv(two_ids)
    leak = _csv(tmp_path, [("a.png", "1", "c", "A", "train"), ("a.png", "1", "c", "A", "query")])
    with pytest.raises(DatasetError, match="in both train .line 2. and query .line 3."):
        load_csv(leak)
    mixed = _csv(tmp_path, [("a.png", "1", "c", "A", "test"), ("b.png", "1", "c", "A", "query")])
    with pytest.raises(DatasetError, match="mixes split 'test'"):
        load_csv(mixed)


def test_csv_missing_files_and_duplicates_are_skipped_with_counts(tmp_path, caplog):
    rows = [("a.png", "1", "c", "A", "train"), ("a.png", "1", "c", "A", "train"),
            ("b.png", "1", "c", "A", "train"), ("gone.png", "2", "c", "G", "train")]
    path = _csv(tmp_path, rows[:3])
    (tmp_path / "dataset.csv").write_text(HEADER + "".join(",".join(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING, logger="cvnet.core.datasets"):
        dataset = load_csv(path)
    assert [os.path.basename(r.path) for r in dataset.records] == ["a.png", "b.png"]
    reasons = sorted(reason for _, reason in dataset.skipped)
    assert reasons == ["duplicate row: line 3 repeats line 2", "file not found"]
    assert "skipped 2 listed image(s): duplicate row=1, file not found=1" in caplog.text


def test_all_files_missing_is_an_error(tmp_path):
    path = _csv(tmp_path, [("a.png", "1", "c", "A", "train")], create_images=False)
    with pytest.raises(DatasetError, match="none of the 1 images .* relative to the CSV"):
        load_csv(path)


def test_single_image_train_ids_and_shared_ids_warn(tmp_path, caplog):
    rows = [("a.png", "1", "c", "A", "train"), ("b.png", "2", "c", "A", "train"),
            ("c.png", "2", "c", "G", "train"), ("d.png", "2", "c", "A", "test")]
    with caplog.at_level(logging.WARNING, logger="cvnet.core.datasets"):
        load_csv(_csv(tmp_path, rows))
    assert "1 of 2 train identities have a single image" in caplog.text
    assert "1 identities appear in both train and the evaluation splits" in caplog.text


def test_empty_split_names_the_split_and_file(tmp_path):
    dataset = load_csv(_csv(tmp_path, [("a.png", "1", "c", "A", "test")]))
    with pytest.raises(DatasetError, match=r"dataset.csv has no 'train' images .*test=1"):
        dataset.split("train")
    with pytest.raises(ConfigError, match="unknown split"):
        dataset.split("val")


def test_derived_crossview_protocols(tmp_path):
    dataset = load_csv(_csv(tmp_path, CROSSVIEW))
    assert standard_protocols(dataset) == ("A2G", "G2A")
    a2g = crossview_split(dataset.records, "A2G")
    assert [r.view for r in a2g.query] == ["A", "A"] and len(a2g.gallery) == 4
    assert {r.view for r in a2g.gallery} == {"G"} and {r.split for r in a2g.query} == {"test"}
    g2a = evaluation_splits(dataset, "G2A")[0]
    assert len(g2a.query) == 4 and len(g2a.gallery) == 2
    assert evaluation_splits(dataset)[0] == a2g  # the first standard protocol


def test_same_view_protocol_on_test_split_excludes_each_image_from_its_own_gallery(tmp_path):
    dataset = load_csv(_csv(tmp_path, CROSSVIEW))
    g2g = crossview_split(dataset.records, "G2G")
    assert g2g.query == g2g.gallery and len(g2g.query) == 4
    labels = g2g.rank_labels()
    assert list(labels["q_cams"]) == ["G0", "G1", "G2", "G0"]
    # distance 0 to itself, 1 to the other image of the same id, 2 to other ids: the self-match
    # is removed by the same-id same-camera rule, so the other image ranks first for every query
    ids = labels["q_ids"]
    distmat = np.where(ids[:, None] == ids[None, :], 1.0, 2.0) - np.eye(4)
    result = evaluate_rank(distmat, **labels)
    assert result["mAP"] == 1.0 and result["num_valid_queries"] == 4


def test_same_view_protocol_without_cameras_is_refused(tmp_path):
    rows = [(p, i, "", v, s) for p, i, _, v, s in CROSSVIEW]
    dataset = load_csv(_csv(tmp_path, rows))
    with pytest.raises(DatasetError, match="share 4 images and cameras are unknown"):
        crossview_split(dataset.records, "G2G", source="mine")
    assert crossview_split(dataset.records, "A2G").rank_labels()["q_cams"] is None


def test_explicit_query_gallery_splits_are_used(tmp_path):
    rows = [("q1.png", "1", "A0", "A", "query"), ("q2.png", "1", "G0", "G", "query"),
            ("g1.png", "1", "G1", "G", "gallery"), ("g2.png", "2", "A1", "A", "gallery"),
            ("g3.png", "1", "A2", "A", "gallery")]
    dataset = load_csv(_csv(tmp_path, rows))
    a2g = crossview_split(dataset.records, "A2G")
    assert [os.path.basename(r.path) for r in a2g.query] == ["q1.png"]
    assert [os.path.basename(r.path) for r in a2g.gallery] == ["g1.png"]
    everything = crossview_split(dataset.records, "all")
    assert len(everything.query) == 2 and len(everything.gallery) == 3
    without_g1 = [r for r in dataset.records if not r.path.endswith("g1.png")]
    with pytest.raises(DatasetError, match="protocol G2G: no gallery images in x.csv: it needs "
                                           "split 'gallery' with view G, .* A=2"):
        crossview_split(without_g1, "G2G", source="x.csv")
    with pytest.raises(ConfigError, match="unknown protocol 'a2g'"):
        crossview_split(dataset.records, "a2g")


def _veri(tmp_path):
    root = tmp_path / "VeRi"
    for name in ("0002_c002_00030600_0.jpg", "0002_c003_00030640_1.jpg", "0010_c001_1_0.jpg"):
        _png(root / "image_train" / name)
    _png(root / "image_query" / "0005_c004_00010_0.jpg")
    for name in ("0005_c004_00010_0.jpg", "0005_c009_00020_0.jpg", "0006_c004_1_0.jpg",
                 "-1_c004_1_0.jpg", "junk.jpg"):
        _png(root / "image_test" / name)
    (root / "image_test" / "readme.txt").write_text("not an image")
    return root


def test_veri_loader_parses_names_and_skips_junk(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cvnet.core.datasets"):
        dataset = load_dataset(str(_veri(tmp_path)))
    assert dataset.kind == "veri"
    assert dataset.counts() == {"train": 3, "query": 1, "gallery": 3}
    train = dataset.split("train")
    assert [(r.vehicle_id, r.camera, r.view) for r in train] == [
        ("2", "c002", ""), ("2", "c003", ""), ("10", "c001", "")]
    assert sorted(reason.split(":")[0] for _, reason in dataset.skipped) == [
        "junk identity", "unparseable name"]
    assert "1 of 2 train identities have a single image" in caplog.text
    assert standard_protocols(dataset) == ("all",)
    split = evaluation_splits(dataset)[0]
    labels = split.rank_labels()
    assert list(labels["q_ids"]) == ["5"] and list(labels["g_cams"]) == ["c004", "c009", "c004"]
    # the query image is also in the gallery (as in VeRi); the camera rule removes it
    result = evaluate_rank(np.array([[0.0, 0.5, 0.2]]), **labels)
    assert result["mAP"] == 0.5  # the c009 image ranks 2nd once the identical one is removed


def test_veri_missing_folder(tmp_path):
    (tmp_path / "image_train").mkdir()
    with pytest.raises(DatasetError, match="lacks image_query/"):
        load_veri(str(tmp_path))


def _vehicleid(tmp_path, missing=()):
    root = tmp_path / "VehicleID"
    lists = root / "train_test_split"
    lists.mkdir(parents=True)
    train = [("0001", "11"), ("0002", "11"), ("0003", "12"), ("0004", "12")]
    test = [("0101", "021"), ("0102", "21"), ("0103", "21"), ("0104", "22"), ("0105", "22"),
            ("0106", "23")] + [("{:04d}".format(200 + i), str(30 + i // 3)) for i in range(30)]
    (lists / "train_list.txt").write_text("".join("%s %s\n" % row for row in train))
    (lists / "test_list_800.txt").write_text("\n".join("%s %s" % row for row in test) + "\n\n")
    for name, _ in train + test:
        if name not in missing:
            _png(root / "image" / (name + ".jpg"))
    return root


def test_vehicleid_loader_and_protocol(tmp_path):
    dataset = load_dataset(str(_vehicleid(tmp_path, missing=("0004",))), "vehicleid")
    assert dataset.kind == "vehicleid"
    assert dataset.counts() == {"train": 3, "test": 36}
    assert dataset.skipped == [(str(tmp_path.resolve() / "VehicleID" / "image" / "0004.jpg"),
                                "file not found")]
    assert standard_protocols(dataset) == ("all",)
    test = dataset.split("test")
    trial = vehicleid_split(test, seed=0)
    gallery_ids = [r.vehicle_id for r in trial.gallery]
    assert sorted(gallery_ids, key=int) == gallery_ids and len(set(gallery_ids)) == 13
    assert "23" in gallery_ids and "23" not in {r.vehicle_id for r in trial.query}  # single image
    assert len(trial.query) == 36 - 13
    assert trial.rank_labels()["q_cams"] is None
    assert vehicleid_split(test[::-1], seed=0) == trial  # independent of record order
    trials = evaluation_splits(dataset, trials=4, seed=5)
    assert len(trials) == 4 and trials[0] == vehicleid_split(test, seed=5)
    assert len({tuple(r.path for r in t.gallery) for t in trials}) > 1  # the draws differ
    with pytest.raises(ConfigError, match="VehicleID has no views"):
        evaluation_splits(dataset, "A2G")


def test_vehicleid_bad_input(tmp_path):
    root = _vehicleid(tmp_path)
    with pytest.raises(ConfigError, match="test_size must be one of"):
        load_vehicleid(str(root), test_size=900)
    with pytest.raises(DatasetError, match="test_list_1600.txt does not exist"):
        load_vehicleid(str(root), test_size=1600)
    (root / "train_test_split" / "train_list.txt").write_text("0001 11\n0002\n")
    with pytest.raises(DatasetError, match="train_list.txt line 2: expected 'image_name "
                                           "vehicle_id'"):
        load_vehicleid(str(root))
    with pytest.raises(DatasetError, match="needs records of split 'test'"):
        vehicleid_split([ImageRecord("a", "1", "", "", "train")])


def test_detect_format(tmp_path):
    (tmp_path / "synth").mkdir()
    csv_path = _csv(tmp_path / "synth", CROSSVIEW[:1])
    assert detect_format(csv_path) == "csv"
    assert detect_format(str(tmp_path / "synth")) == "csv"
    assert load_dataset(str(tmp_path / "synth")).source == os.path.realpath(csv_path)
    assert detect_format(str(_veri(tmp_path))) == "veri"
    assert detect_format(str(_vehicleid(tmp_path))) == "vehicleid"
    with pytest.raises(DatasetError, match="matches none"):
        detect_format(str(tmp_path / "VeRi" / "image_train"))
    (tmp_path / "VeRi" / "train_test_split").mkdir()
    with pytest.raises(DatasetError, match="matches veri and vehicleid"):
        detect_format(str(tmp_path / "VeRi"))
    with pytest.raises(DatasetError, match="does not exist"):
        detect_format(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="unknown dataset format 'coco'"):
        load_dataset(csv_path, "coco")


def test_check_images_keeps_good_records_and_reports_bad(tmp_path, caplog):
    good = ImageRecord(_png(tmp_path / "good.png"), "1", "c", "A", "train")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    text = good._replace(path=str(tmp_path / "text.png"))
    empty = good._replace(path=str(tmp_path / "empty.png"))
    with caplog.at_level(logging.WARNING, logger="cvnet.core.datasets"):
        kept, bad = check_images([text, good, empty, good])
    assert kept == [good, good]
    assert [path for path, _ in bad] == [text.path, empty.path]
    assert "not a decodable image" in bad[0][1] and "file is empty" in bad[1][1]
    assert "2 of 4 images cannot be decoded" in caplog.text


def test_write_csv_round_trips(tmp_path):
    dataset = load_csv(_csv(tmp_path, CROSSVIEW))
    out = tmp_path / "copy" / "dataset.csv"
    out.parent.mkdir()
    write_csv(dataset.records, str(out))
    assert out.read_text().splitlines()[1] == "../img/t1a.png,1,A0,A,train"
    assert load_csv(str(out)).records == dataset.records


def test_csv_names_are_bytes_under_any_locale(tmp_path):
    """A dataset CSV names files as bytes: a Latin-1 name round-trips through write_csv, and a
    UTF-8 one loads under LANG=C (Python 3.6 there cannot open "\u00e9" given as text)."""
    names = [b"v\xe9hicule.png", b"v\xc3\xa9hicule.png", b"plain.png", b"t1.png", b"t2.png"]
    for name in names:
        _png(os.path.join(os.fsdecode(os.fsencode(str(tmp_path)) + b"/img/" + name)))
    rows = b"".join(b"img/" + name + b",%d,c%d,%s,%s\n" % (i, i, b"AG"[i % 2:i % 2 + 1],
                                                           b"train" if i < 2 else b"test")
                    for i, name in enumerate(names))
    (tmp_path / "dataset.csv").write_bytes(HEADER.encode() + rows)
    dataset = load_csv(str(tmp_path / "dataset.csv"))
    assert [os.fsencode(os.path.basename(r.path)) for r in dataset.records] == names
    out = tmp_path / "copy" / "dataset.csv"
    out.parent.mkdir()
    write_csv(dataset.records, str(out))
    assert out.read_bytes().splitlines()[1] == b"../img/v\xe9hicule.png,0,c0,A,train"
    assert load_csv(str(out)).records == dataset.records
    code = ("import os; from cvnet.core.datasets import load_csv; "
            "print(len(load_csv({!r}).records))".format(str(tmp_path / "dataset.csv")))
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONIOENCODING", "PYTHONUTF8") and not key.startswith("LC_")}
    env.update(LANG="C", LC_ALL="C", PYTHONPATH=ROOT)
    assert subprocess.check_output([sys.executable, "-c", code], env=env).strip() == b"5"


def test_canonical_ids_and_label_order():
    assert [canonical_id(v) for v in ("0002", " 2 ", "A-12", "007b", "-1")] == [
        "2", "2", "A-12", "007b", "-1"]
    records = [ImageRecord("p", vid, "", "", "train") for vid in ("10", "b", "2", "a", "2")]
    assert identity_labels(records) == {"2": 0, "10": 1, "a": 2, "b": 3}


def test_query_gallery_is_a_pair():
    record = ImageRecord("p", "1", "c", "A", "test")
    query, gallery = QueryGallery([record], [record])
    assert query == gallery == [record]
