"""Any file name the file system allows goes through cvnet-embed, --resume and cvnet-match.

The commands run in subprocesses under ``LANG=C`` (and the resume under ``C.UTF-8``) with
``PYTHONIOENCODING`` unset: under Python 3.6 (the device suite) that makes the file system
encoding ASCII, so a valid UTF-8 name is as foreign as a Latin-1 one.
"""

import csv
import io
import os
import sqlite3
import subprocess
import sys
import urllib.parse

import cv2
import numpy as np
import pytest

from cvnet.core.synth import sample_images
from cvnet.jetson.store import INDEX_FILE, file_path, load_embeddings, read_meta
from tests.jetson.stores import uncommit

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = os.path.join(ROOT, "tests", "fixtures", "tiny", "cvnet_tiny.onnx")

#: Names as bytes: Latin-1 (not UTF-8), UTF-8 non-ASCII, '%', a comma, and plain ones.
ANY_BYTES = [b"v\xe9hicule.jpg", b"v\xc3\xa9hicule.png", b"100%.png", b"a,b.png",
             b"sub\xff/\xe8\xbb\x8a.png", b"plain_0.png", b"plain_1.png"]
#: Valid UTF-8 only: under Python 3.6 and LANG=C these fail as the Latin-1 one does.
UTF8_ONLY = [b"v\xc3\xa9hicule.png", b"\xe8\xbb\x8a.jpg", b"caf\xc3\xa9/\xc3\xbc.png",
             b"plain_0.png", b"plain_1.png", b"plain_2.png", b"plain_3.png"]


def _env(locale):
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONIOENCODING", "PYTHONUTF8") and not key.startswith("LC_")}
    env.update(LANG=locale, LC_ALL=locale, PYTHONPATH=ROOT)
    return env


def _run(args, locale):
    """``python -m cvnet.jetson`` with bytes arguments under ``locale``: (status, stdout)."""
    process = subprocess.Popen([sys.executable.encode(), b"-m", b"cvnet.jetson"] + args, cwd=ROOT,
                               env=_env(locale), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode("utf-8", "replace")
    return out


def _make_folder(folder, names):
    os.makedirs(folder)
    for name, image in zip(names, sample_images(len(names), seed=11, size=48)):
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ok, data = cv2.imencode(".png" if name.endswith(b".png") else ".jpg", image)
        with open(path, "wb") as handle:
            handle.write(data.tobytes())


@pytest.mark.parametrize("names", [ANY_BYTES, UTF8_ONLY], ids=["any-bytes", "utf8-only"])
def test_any_name_through_embed_resume_and_match(tmp_path, names):
    base = os.fsencode(str(tmp_path))
    images = os.path.join(base, b"cam\xc3\xa9ra \xe9t\xe9")  # the folder itself, too
    out = os.path.join(base, b"sortie")
    _make_folder(images, names)
    embed = [b"embed", b"--engine", os.fsencode(ENGINE), b"--images", images, b"-o", out,
             b"--chunk-size", b"2", b"--threads", b"1"]
    _run(embed, "C")

    embeddings, rows, meta = load_embeddings(os.fsdecode(out))
    assert sorted(urllib.parse.unquote_to_bytes(row.path) for row in rows) == sorted(names)
    assert all(row.status == "ok" for row in rows) and len(embeddings) == len(names)
    assert os.fsencode(file_path(meta["root"], rows[0].path)).startswith(images + b"/")
    connection = sqlite3.connect(os.path.join(os.fsdecode(out), INDEX_FILE))
    stored = [line[0] for line in connection.execute("SELECT path FROM files ORDER BY seq")]
    connection.close()
    assert stored == [row.path for row in rows]  # UTF-8 text that any SQLite tool reads
    assert all(path.encode("utf-8") for path in stored)
    assert ("%E9" in " ".join(row.path for row in rows)) == (names is ANY_BYTES)

    # A kill between a chunk's .npy and its index; resume under another locale.
    uncommit(os.fsdecode(out), 3)  # the last of 4 chunks
    _run(embed + [b"--resume"], "C.UTF-8")
    resumed, resumed_rows, _ = load_embeddings(os.fsdecode(out))
    assert resumed_rows == rows
    np.testing.assert_allclose(resumed, embeddings, atol=1e-6)

    # Match the folder against itself: every file finds itself, named so that it can be opened.
    pictures = os.path.join(base, b"pictures")
    text = _run([b"match", b"--query", out, b"--gallery", out, b"--topk", b"1",
                 b"--visualize", pictures], "C").decode("utf-8")
    top1 = {row["query"]: row["gallery"] for row in csv.DictReader(io.StringIO(text))}
    assert len(top1) == len(names)
    assert all(query == gallery for query, gallery in top1.items())
    for name in top1:
        assert os.path.isfile(os.path.join(images, urllib.parse.unquote_to_bytes(name)))
    drawn = sorted(os.listdir(pictures))
    assert len(drawn) == len(names) and any(b"v\xc3\xa9hicule" in name for name in drawn)
    assert urllib.parse.unquote_to_bytes(read_meta(os.fsdecode(out))["root"]) == images
