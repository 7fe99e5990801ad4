"""The embedding store: commit marker, consistency checks, reader."""

import json
import os

import numpy as np
import pytest

from cvnet.jetson.store import (FORMAT, IndexRow, StoreError, chunk_paths, file_path,
                                load_embeddings, read_meta, scan_chunks, write_chunk, write_meta)

pytestmark = pytest.mark.device


def _store(folder, sizes=(3, 0, 2), dim=4):
    os.makedirs(folder)
    write_meta(folder, {"format": FORMAT, "format_version": 1, "embedding_dim": dim,
                        "dtype": "float32"})
    row = 0
    for number, size in enumerate(sizes):
        rows = [IndexRow("f{}-{}.png".format(number, i), "ok", row + i, "", "")
                for i in range(size)]
        rows.append(IndexRow("bad{}.jpg".format(number), "failed", -1, "empty", "empty, \"0\""))
        write_chunk(folder, number, np.full((size, dim), number, np.float32), rows)
        row += size
    return folder


def test_round_trip_with_an_empty_chunk(tmp_path):
    folder = _store(str(tmp_path / "s"))
    embeddings, rows, meta = load_embeddings(folder)
    assert embeddings.shape == (5, 4) and meta["embedding_dim"] == 4
    assert [row.row for row in rows if row.status == "ok"] == [0, 1, 2, 3, 4]
    assert rows[3] == IndexRow("bad0.jpg", "failed", -1, "empty", "empty, \"0\"")
    assert np.load(chunk_paths(folder, 1)[0]).shape == (0, 4)
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_inconsistencies_are_named(tmp_path):
    folder = _store(str(tmp_path / "s"))
    os.remove(chunk_paths(folder, 1)[1])  # index of the middle chunk gone: a gap after repair
    with pytest.raises(StoreError, match="no index"):
        scan_chunks(folder)
    with pytest.raises(StoreError, match="gaps"):
        scan_chunks(folder, repair=True)
    folder = _store(str(tmp_path / "t"))
    os.remove(chunk_paths(folder, 2)[0])
    with pytest.raises(StoreError, match="no embeddings file"):
        scan_chunks(folder)
    folder = _store(str(tmp_path / "u"))
    np.save(chunk_paths(folder, 0)[0], np.zeros((2, 4), np.float32))
    with pytest.raises(StoreError, match="inconsistent"):
        scan_chunks(folder)


def test_meta_must_be_ours(tmp_path):
    with pytest.raises(StoreError, match="cvnet-embed"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoreError, match="format"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text(json.dumps({"format": FORMAT, "format_version": 99}))
    with pytest.raises(StoreError, match="version 99.*update cvnet"):
        read_meta(str(tmp_path))


def test_version_1_folders_read_with_their_plain_names(tmp_path):
    """Format 1 wrote names as plain text: they read back in today's escaped form."""
    folder = str(tmp_path / "old")
    os.makedirs(folder)
    (tmp_path / "old" / "meta.json").write_text(json.dumps(
        {"format": FORMAT, "format_version": 1, "embedding_dim": 2, "dtype": "float32",
         "root": "/data/caf\u00e9 100%"}))
    np.save(chunk_paths(folder, 0)[0], np.ones((2, 2), np.float32))
    with open(chunk_paths(folder, 0)[1], "w", encoding="utf-8") as handle:
        handle.write("path,status,row,kind,message\n100%.png,ok,0,,\nv\u00e9hicule.png,ok,1,,\n")
    _, rows, meta = load_embeddings(folder)
    assert [row.path for row in rows] == ["100%25.png", "v\u00e9hicule.png"]
    assert meta["root"] == "/data/caf\u00e9 100%25"
    assert os.fsencode(file_path(meta["root"], rows[0].path)) == (
        "/data/caf\u00e9 100%/100%.png".encode("utf-8"))
