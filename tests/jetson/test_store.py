"""The embedding store: commit marker, consistency checks, reader."""

import json
import os

import numpy as np
import pytest

from jetson.store import (FORMAT, IndexRow, StoreError, chunk_paths, load_embeddings,
                          read_meta, scan_chunks, write_chunk, write_meta)

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
