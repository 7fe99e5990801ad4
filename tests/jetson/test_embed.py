"""cvnet-embed end to end with the tiny ONNX fixture: every kind of bad file, kill and resume."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from cvnet.core.filenames import decode_name
from cvnet.core.synth import sample_images
from cvnet.core.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from cvnet.jetson.cli import main
from cvnet.jetson.embed import check_image, list_images
from cvnet.jetson.store import (INDEX_FILE, Store, chunk_paths, load_embeddings, read_meta,
                                write_meta)
from tests.jetson.stores import uncommit

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = os.path.join(ROOT, "tests", "fixtures", "tiny", "cvnet_tiny.onnx")


def _write(path, image, ext=None):
    ok, data = cv2.imencode(ext or os.path.splitext(path)[1], image)
    assert ok
    with open(path, "wb") as handle:
        handle.write(data.tobytes())
    return data.tobytes()


def make_mixed_folder(folder):
    """Good crops and every kind of bad file; returns {name: expected (status, kind)}."""
    os.makedirs(os.path.join(folder, "sub"))
    images = sample_images(6, seed=3, size=48)
    expected = {}
    for i, image in enumerate(images[:4]):
        name = "good_{}.{}".format(i, "jpg" if i % 2 else "png")
        if i == 3:
            name = "sub/" + name
        _write(os.path.join(folder, name), image)
        expected[name] = ("ok", "")
    open(os.path.join(folder, "empty.jpg"), "wb").close()
    expected["empty.jpg"] = ("failed", "empty")
    jpeg = _write(os.path.join(folder, "whole.jpg"), images[4])
    os.remove(os.path.join(folder, "whole.jpg"))
    with open(os.path.join(folder, "truncated.jpg"), "wb") as handle:
        handle.write(jpeg[:len(jpeg) // 2])
    expected["truncated.jpg"] = ("failed", "truncated")
    with open(os.path.join(folder, "notes.jpg"), "w") as handle:
        handle.write("this is a text file, not a JPEG\n")
    expected["notes.jpg"] = ("failed", "not_image")
    _write(os.path.join(folder, "really_png.jpg"), images[5], ".png")
    expected["really_png.jpg"] = ("ok", "suffix")
    _write(os.path.join(folder, "gray.png"), cv2.cvtColor(images[0], cv2.COLOR_BGR2GRAY))
    expected["gray.png"] = ("ok", "grayscale")
    _write(os.path.join(folder, "rgba.png"), cv2.cvtColor(images[1], cv2.COLOR_BGR2BGRA))
    expected["rgba.png"] = ("ok", "rgba")
    _write(os.path.join(folder, "deep.png"), images[2].astype(np.uint16) * 257)
    expected["deep.png"] = ("ok", "16bit")
    _write(os.path.join(folder, "tiny.png"), images[3][:4, :4])
    expected["tiny.png"] = ("ok", "tiny")
    _write(os.path.join(folder, "huge.png"), np.full((6000, 6000, 3), 90, np.uint8))
    expected["huge.png"] = ("ok", "huge")
    with open(os.path.join(folder, "readme.txt"), "w") as handle:
        handle.write("not listed: no image suffix\n")
    return expected


def _read_rows(out):
    with Store(out) as store:
        return list(store.iter_rows())


def _committed_row_count(out):
    """Index rows of the chunks a killed run committed; an ``.npy`` without its index (the
    kill landed between the two writes) is uncommitted and not counted, as --resume treats it."""
    with Store(out) as store:
        return sum(chunk.files for chunk in store.chunks)


def test_mixed_folder_every_bad_kind(tmp_path, capsys):
    expected = make_mixed_folder(str(tmp_path / "images"))
    out = str(tmp_path / "out")
    status = main(["embed", "--engine", ENGINE, "--images", str(tmp_path / "images"), "-o", out,
                   "--chunk-size", "5", "--batch-size", "4"])
    assert status == EXIT_PARTIAL
    embeddings, rows, meta = load_embeddings(out)
    assert sorted(row.path for row in rows) == sorted(expected)
    for row in rows:
        want_status, want_kind = expected[row.path]
        assert row.status == want_status, row
        if want_kind:
            assert want_kind in row.kind.split(";"), row
        if row.status == "failed":
            assert row.row == -1 and row.message
    good = [row for row in rows if row.status == "ok"]
    assert len(embeddings) == len(good) == 10
    assert [row.row for row in good] == list(range(10))
    assert embeddings.dtype == np.float32 and embeddings.shape[1] == meta["embedding_dim"] == 96
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert meta["model_hash"] == meta["weights_sha256"] and meta["normalized"] is True
    summary = capsys.readouterr().out
    assert '"failed": 3' in summary and '"truncated": 1' in summary


def test_good_rows_match_the_runner(tmp_path):
    from cvnet.engines import open_engine

    folder = tmp_path / "images"
    folder.mkdir()
    images = sample_images(5, seed=1, size=40)
    for i, image in enumerate(images):
        _write(str(folder / "{}.png".format(i)), image)
    out = str(tmp_path / "out")
    assert main(["embed", "--engine", ENGINE, "--images", str(folder), "-o", out,
                 "--fp16-out"]) == EXIT_OK
    embeddings, _, meta = load_embeddings(out)
    assert embeddings.dtype == np.float16 and meta["dtype"] == "float16"
    with open_engine(ENGINE, normalize=True) as runner:
        reference = runner.embed(images)
    np.testing.assert_allclose(embeddings.astype(np.float32), reference, atol=2e-3)


def test_list_file_and_refusals(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(sample_images(3, seed=2, size=32)):
        _write(str(folder / "{}.png".format(i)), image)
    listing = tmp_path / "list.txt"
    listing.write_text("# crops\nimages/0.png\n\nimages/2.png\nimages/0.png\nimages/missing.png\n")
    root, paths = list_images(str(listing))
    assert root == str(tmp_path) and paths == ["images/0.png", "images/2.png",
                                               "images/missing.png"]
    out = str(tmp_path / "out")
    assert main(["embed", "--engine", ENGINE, "--images", str(listing), "-o", out]) == 3
    rows = _read_rows(out)
    assert [(row.path, row.status, row.kind) for row in rows][-1] == (
        "images/missing.png", "failed", "unreadable")
    # A second run without --resume refuses to mix runs.
    assert main(["embed", "--engine", ENGINE, "--images", str(listing), "-o", out]) == 1
    # --resume with other settings refuses too.
    assert main(["embed", "--engine", ENGINE, "--images", str(listing), "-o", out, "--resume",
                 "--fp16-out"]) == 1
    assert main(["embed", "--engine", ENGINE, "--images", str(tmp_path / "nope"), "-o",
                 str(tmp_path / "o2")]) == 1


def test_too_large_is_refused_before_decoding(tmp_path):
    path = str(tmp_path / "big.png")
    _write(path, np.zeros((300, 400, 3), np.uint8))
    checked = check_image(path, max_pixels=100 * 100)
    assert checked.image is None and checked.kinds == ("too_large",)
    assert "--max-pixels" in checked.message


def _image_folder(tmp_path, count, seed, name="{:02d}.png"):
    """``tmp_path/images`` with ``count`` small PNGs named ``name.format(i)``."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(sample_images(count, seed=seed, size=32)):
        _write(str(folder / name.format(i)), image)
    return folder


def test_uncommitted_chunk_is_redone(tmp_path):
    folder = _image_folder(tmp_path, 10, seed=4)
    out = str(tmp_path / "out")
    args = ["embed", "--engine", ENGINE, "--images", str(folder), "-o", out, "--chunk-size", "4"]
    assert main(args) == EXIT_OK
    clean, clean_rows, _ = load_embeddings(out)
    # Simulate a kill between the .npy and its index (the commit marker) of the last chunk:
    # readers see the committed chunks only, and say so; --resume redoes the chunk.
    uncommit(out, 2)
    partial, partial_rows, _ = load_embeddings(out)
    assert len(partial) == 8 and partial_rows == clean_rows[:8]
    assert os.path.exists(chunk_paths(out, 2)[0])
    assert main(args + ["--resume"]) == EXIT_OK
    resumed, rows, _ = load_embeddings(out)
    assert rows == clean_rows
    np.testing.assert_allclose(resumed, clean, atol=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_gaps(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(sample_images(400, seed=5, size=32)):
        _write(str(folder / "{:03d}.png".format(i)), image)
    clean_out, out = str(tmp_path / "clean"), str(tmp_path / "killed")
    base = [sys.executable, "-m", "cvnet.jetson", "embed", "--engine", ENGINE, "--images",
            str(folder),
            "--chunk-size", "8", "--batch-size", "4", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    process = subprocess.Popen(base + ["-o", out], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second_npy = chunk_paths(out, 1)[0]  # written once chunk 0 is committed
    deadline = time.time() + 60
    while not os.path.exists(second_npy) and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = _committed_row_count(out)
    assert 0 < done < 400
    assert subprocess.call(base + ["-o", out, "--resume"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    assert subprocess.call(base + ["-o", clean_out], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    resumed, rows, _ = load_embeddings(out)
    clean, clean_rows, _ = load_embeddings(clean_out)
    paths = [row.path for row in rows]
    assert len(paths) == len(set(paths)) == 400
    assert paths == [row.path for row in clean_rows]
    assert [row.row for row in rows] == list(range(400))
    np.testing.assert_allclose(resumed, clean, atol=1e-5)


@pytest.mark.parametrize("files, held", [
    ((), "it is empty"),
    (("readme.txt", "clip.gif", "sub/frame.raw"), "it holds 3 other file(s), e.g. clip.gif"),
])
def test_folder_without_images_is_an_error(tmp_path, caplog, files, held):
    folder = tmp_path / "crops"
    folder.mkdir()
    for name in files:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"GIF89a" if name.endswith(".gif") else b"text")
    out = tmp_path / "out"
    status = main(["embed", "--engine", ENGINE, "--images", str(folder), "-o", str(out)])
    assert status == EXIT_ERROR
    message = caplog.records[-1].getMessage()
    assert str(folder) in message and held in message
    assert ".jpg .jpeg .png" in message  # what is supported
    assert not out.exists()  # refused before anything was opened or written


def test_empty_list_file_is_an_error(tmp_path, caplog):
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing yet\n\n")
    assert main(["embed", "--engine", ENGINE, "--images", str(listing), "-o",
                 str(tmp_path / "out")]) == EXIT_ERROR
    assert str(listing) in caplog.text and "names no file" in caplog.text


def _escape_otherwise(text):
    """The same names escaped as another cvnet may have: a no-break space written as it is
    becomes ``%C2%A0``, and ``%C2%A0`` the character (both decode to the same bytes)."""
    return text.replace("%C2%A0", "\0").replace("\u00a0", "%C2%A0").replace("\0", "\u00a0")


def test_a_store_whose_names_were_escaped_otherwise_resumes(tmp_path):
    """--resume compares names by their bytes: a store written by a cvnet whose escaping of the
    same names differs (the older rule escaped U+00A0; Python 3.6 and 3.11 disagreed on newer
    characters) is continued, not refused, and no file is embedded twice."""
    folder = tmp_path / "cam\u00a0north"
    folder.mkdir()
    names = ["car\u00a0{}.png".format(i) for i in range(5)]
    for name, image in zip(names, sample_images(5, seed=8, size=32)):
        _write(str(folder / name), image)
    out = str(tmp_path / "out")
    args = ["embed", "--engine", ENGINE, "--images", str(folder), "-o", out, "--chunk-size", "2"]
    assert main(args) == EXIT_OK
    clean, clean_rows, _ = load_embeddings(out)
    connection = sqlite3.connect(os.path.join(out, INDEX_FILE), isolation_level=None)
    try:
        for seq, path in connection.execute("SELECT seq, path FROM files").fetchall():
            connection.execute("UPDATE files SET path = ? WHERE seq = ?",
                               (_escape_otherwise(path), seq))
    finally:
        connection.close()
    meta = read_meta(out)
    write_meta(out, dict(meta, root=_escape_otherwise(meta["root"])))
    uncommit(out, 2)  # a kill before the last chunk's commit
    assert main(args + ["--resume"]) == EXIT_OK
    resumed, rows, _ = load_embeddings(out)
    assert [decode_name(row.path) for row in rows] == [decode_name(row.path)
                                                       for row in clean_rows]
    np.testing.assert_allclose(resumed, clean, atol=1e-6)


def test_a_folder_of_an_older_format_is_not_resumed(tmp_path, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    _write(str(folder / "a.png"), sample_images(1, seed=6, size=32)[0])
    out = tmp_path / "out"
    args = ["embed", "--engine", ENGINE, "--images", str(folder), "-o", str(out)]
    assert main(args) == EXIT_OK
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps(dict(meta, format_version=1)))
    assert main(args + ["--resume"]) == EXIT_ERROR
    assert "older cvnet-embed" in caplog.text


def test_a_float16_overflow_stops_the_run_naming_the_file(tmp_path):
    """Review #18-2: --fp16-out --no-normalize cast large embeddings to inf, then stored them."""
    from cvnet.engines import open_engine
    from cvnet.jetson.embed import extract
    from cvnet.jetson.store import StoreError

    folder = _image_folder(tmp_path, 6, seed=3, name="{}.png")
    out = str(tmp_path / "out")

    class Loud:  # the real runner, its raw embeddings beyond float16's 65504
        def __init__(self, runner):
            self._runner = runner

        def __getattr__(self, name):
            return getattr(self._runner, name)

        def embed(self, images, normalize=True):
            return self._runner.embed(images, normalize=normalize) * 1e6

    with open_engine(ENGINE, normalize=False) as runner:
        with pytest.raises(StoreError, match=r"chunk 0.*'0.png'.*not finite.*--fp16-out"):
            extract(Loud(runner), str(folder), out, fp16_out=True, normalize=False,
                    batch=2, chunk_size=4)
    assert not os.path.exists(chunk_paths(out, 0)[0])
