"""The embedding store: commits, consistency checks, lazy reads, formats 1-2 and migration."""

import json
import logging
import os
import sqlite3

import numpy as np
import pytest

from cvnet.jetson import store_index
from cvnet.jetson.store import (FORMAT, INDEX_FILE, IndexRow, Store, StoreError, StoreWriter,
                                chunk_paths, file_path, load_embeddings, migrate_store,
                                read_meta, write_chunk, write_meta)

pytestmark = pytest.mark.device


def _store(folder, sizes=(3, 0, 2), dim=4, dtype=np.float32, **meta):
    """Chunks of ``sizes`` good rows (chunk n's rows hold n), each with one failed file."""
    os.makedirs(folder)
    writer = StoreWriter.create(folder, dict({"format": FORMAT, "embedding_dim": dim,
                                              "dtype": np.dtype(dtype).name}, **meta))
    row = 0
    with writer:
        for number, size in enumerate(sizes):
            rows = [IndexRow("f{}-{}.png".format(number, i), "ok", row + i, "", "", "A",
                             1.7e9 + row + i) for i in range(size)]
            rows.append(IndexRow("bad{}.jpg".format(number), "failed", -1, "empty",
                                 "empty, \"0\""))
            writer.commit(np.full((size, dim), number + 1, dtype), rows)
            row += size
    return folder


def test_round_trip_with_an_empty_chunk(tmp_path):
    folder = _store(str(tmp_path / "s"), operating_points={"A2G": 0.5})
    embeddings, rows, meta = load_embeddings(folder)
    assert embeddings.shape == (5, 4) and meta["embedding_dim"] == 4
    assert meta["format_version"] == 3 and meta["operating_points"] == {"A2G": 0.5}
    assert [row.row for row in rows if row.status == "ok"] == [0, 1, 2, 3, 4]
    assert rows[3] == IndexRow("bad0.jpg", "failed", -1, "empty", "empty, \"0\"", "", None)
    assert rows[0] == IndexRow("f0-0.png", "ok", 0, "", "", "A", 1.7e9)
    assert np.load(chunk_paths(folder, 1)[0]).shape == (0, 4)
    assert sorted(os.listdir(folder)) == ["emb-00000.npy", "emb-00001.npy", "emb-00002.npy",
                                          INDEX_FILE, "meta.json"]


def test_blocks_span_chunks_in_one_buffer_and_widen_float16(tmp_path):
    rng = np.random.RandomState(0)
    data = rng.randn(23, 5).astype(np.float16)
    folder = str(tmp_path / "h")
    os.makedirs(folder)
    with StoreWriter.create(folder, {"embedding_dim": 5, "dtype": "float16"}) as writer:
        for start in range(0, 23, 4):
            part = data[start:start + 4]
            writer.commit(part, [IndexRow("{}.png".format(start + i), "ok", start + i, "", "")
                                 for i in range(len(part))])
    with Store(folder) as store:
        assert store.size == 23 and len(store.chunks) == 6
        seen, buffers = [], []
        for first_row, block in store.blocks(7, start=2, stop=21):
            assert block.dtype == np.float32 and len(block) <= 7
            seen.append((first_row, block.copy()))
            buffers.append(block)
        assert [first for first, _ in seen] == [2, 9, 16]
        np.testing.assert_array_equal(np.concatenate([b for _, b in seen]),
                                      data[2:21].astype(np.float32))
        assert all(np.shares_memory(buffers[0], other) for other in buffers)  # one buffer
        np.testing.assert_array_equal(store.vectors([22, 0, 5]),
                                      data[[22, 0, 5]].astype(np.float32))
        assert store.lookup([22, 5, 99, -1]) == {
            22: IndexRow("22.png", "ok", 22, "", ""), 5: IndexRow("5.png", "ok", 5, "", "")}


def test_inconsistencies_are_named(tmp_path, caplog):
    folder = _store(str(tmp_path / "s"))
    os.remove(chunk_paths(folder, 2)[0])
    with pytest.raises(StoreError, match="chunk 2 is committed but emb-00002.npy is missing"):
        Store(folder)
    folder = _store(str(tmp_path / "u"))
    np.save(chunk_paths(folder, 0)[0], np.zeros((2, 4), np.float32))
    with pytest.raises(StoreError, match="inconsistent"):
        Store(folder)
    folder = _store(str(tmp_path / "w"))
    np.save(chunk_paths(folder, 1)[0], np.zeros((0, 4), np.float64))
    with pytest.raises(StoreError, match="float32 or float16"):
        Store(folder)
    # An uncommitted .npy (a kill before its index): skipped with a warning, deleted on repair.
    folder = _store(str(tmp_path / "v"))
    np.save(chunk_paths(folder, 3)[0], np.zeros((2, 4), np.float32))
    with caplog.at_level(logging.WARNING), Store(folder) as store:
        assert store.size == 5
    assert "emb-00003.npy is not committed" in caplog.text
    with StoreWriter(folder) as writer:  # a writer repairs
        assert (writer.next_number, writer.next_row) == (3, 5)
    assert not os.path.exists(chunk_paths(folder, 3)[0])


def test_a_refused_commit_commits_nothing(tmp_path):
    folder = _store(str(tmp_path / "s"))
    with StoreWriter(folder) as writer:
        with pytest.raises(StoreError, match="numbered"):
            writer.commit(np.ones((1, 4), np.float32), [IndexRow("x.png", "ok", 9, "", "")])
        with pytest.raises(StoreError, match="float64, the store holds float32"):
            writer.commit(np.ones((1, 4)), [IndexRow("x.png", "ok", 5, "", "")])
        with pytest.raises(StoreError, match="listed twice"):
            writer.commit(np.ones((1, 4), np.float32), [IndexRow("f0-0.png", "ok", 5, "", "")])
    with Store(folder) as store:  # the refused chunk's .npy is an uncommitted one
        assert store.size == 5 and len(store.chunks) == 3
    with pytest.raises(StoreError, match="the next is 3"):
        write_chunk(folder, 7, np.ones((1, 4), np.float32), [IndexRow("y.png", "ok", 5, "", "")])
    write_chunk(folder, 3, np.ones((1, 4), np.float32), [IndexRow("y.png", "ok", 5, "", "")])
    assert load_embeddings(folder)[0].shape == (6, 4)


def test_the_writer_commits_durably(tmp_path):
    """Rollback journal, synchronous=EXTRA: a returned commit survives a power loss."""
    folder = _store(str(tmp_path / "s"))
    with StoreWriter(folder) as writer:
        assert writer.index.synchronous == 3
        mode = writer.index._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "delete"


def test_meta_must_be_ours(tmp_path):
    with pytest.raises(StoreError, match="cvnet-embed"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoreError, match="format"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text(json.dumps({"format": FORMAT, "format_version": 99}))
    with pytest.raises(StoreError, match="version 99.*update cvnet"):
        read_meta(str(tmp_path))


def _csv_store(folder, version, chunks, meta=None):
    """A folder as cvnet-embed of format ``version`` (1 or 2) wrote it: a CSV per chunk."""
    os.makedirs(folder)
    write_meta(folder, dict({"format": FORMAT, "format_version": version, "embedding_dim": 2,
                             "dtype": "float32"}, **(meta or {})))
    for number, (embeddings, text) in enumerate(chunks):
        np.save(chunk_paths(folder, number)[0], embeddings)
        with open(chunk_paths(folder, number)[1], "w", encoding="utf-8") as handle:
            handle.write("path,status,row,kind,message\n" + text)
    return folder


def test_version_1_folders_read_with_their_plain_names_and_migrate(tmp_path):
    """Format 1 wrote names as plain text: they read back in today's escaped form, and stay so
    after the migration to format 3."""
    folder = _csv_store(str(tmp_path / "old"), 1, [
        (np.ones((2, 2), np.float32), "100%.png,ok,0,,\nv\u00e9hicule.png,ok,1,,\n"),
        (np.full((1, 2), 2, np.float32), "broken.png,failed,-1,empty,\"empty, 0\"\nc.png,ok,2,,\n"),
    ], {"root": "/data/caf\u00e9 100%", "thresholds": [0.4]})
    embeddings, rows, meta = load_embeddings(folder)
    assert [row.path for row in rows] == ["100%25.png", "v\u00e9hicule.png", "broken.png",
                                          "c.png"]
    assert meta["root"] == "/data/caf\u00e9 100%25"
    assert os.fsencode(file_path(meta["root"], rows[0].path)) == (
        "/data/caf\u00e9 100%/100%.png".encode("utf-8"))
    with Store(folder) as store:
        assert store.lookup([2]) == {2: IndexRow("c.png", "ok", 2, "", "")}
    report = migrate_store(folder)
    assert report == {"folder": folder, "from_version": 1, "chunks": 2, "rows": 3, "files": 4}
    migrated, migrated_rows, migrated_meta = load_embeddings(folder)
    assert migrated_rows == rows and migrated_meta["format_version"] == 3
    assert migrated_meta["root"] == meta["root"] and migrated_meta["thresholds"] == [0.4]
    np.testing.assert_array_equal(migrated, embeddings)
    assert not [name for name in os.listdir(folder) if name.endswith(".csv")]
    assert migrate_store(folder)["from_version"] == 3  # a second run changes nothing
    write_chunk(folder, 2, np.zeros((1, 2), np.float32), [IndexRow("d.png", "ok", 3, "", "")])


def test_version_2_folders_must_migrate_before_appending(tmp_path):
    folder = _csv_store(str(tmp_path / "v2"), 2, [(np.ones((1, 2), np.float32), "a.png,ok,0,,\n"),
                                                  (np.ones((1, 2), np.float32), "b.png,ok,1,,\n")])
    np.save(chunk_paths(folder, 2)[0], np.ones((1, 2), np.float32))  # a killed run's chunk
    with pytest.raises(StoreError, match="migrate-store"):
        StoreWriter(folder)
    with Store(folder) as store:
        assert store.size == 2
    # An interrupted migration (index written, meta.json not yet switched) starts again.
    open(os.path.join(folder, INDEX_FILE), "wb").close()
    assert migrate_store(folder)["rows"] == 2
    assert not os.path.exists(chunk_paths(folder, 2)[0])
    with StoreWriter(folder) as writer:
        assert (writer.next_number, writer.next_row) == (2, 2)


def test_readers_materialise_only_the_rows_they_ask_for(tmp_path, monkeypatch):
    """A million-row index is never read whole: a look-up builds only the rows asked for."""
    folder = str(tmp_path / "big")
    os.makedirs(folder)
    with StoreWriter.create(folder, {"embedding_dim": 2, "dtype": "float32"}) as writer:
        for start in range(0, 3000, 500):
            writer.commit(np.ones((500, 2), np.float32),
                          [IndexRow("{}.png".format(start + i), "ok", start + i, "", "")
                           for i in range(500)])
    built = []
    real = store_index._row
    monkeypatch.setattr(store_index, "_row", lambda values: built.append(values) or real(values))
    statements = []
    with Store(folder) as store:
        store.index._db.set_trace_callback(lambda sql: statements.append(sql))
        for _ in store.blocks(1024):
            pass
        assert sorted(store.lookup([2999, 7, 1500])) == [7, 1500, 2999]
    assert len(built) == 3
    assert all("emb_row IN" in sql for sql in statements if "FROM files" in sql)
    connection = sqlite3.connect(os.path.join(folder, INDEX_FILE))
    plan = " ".join(str(line) for line in connection.execute(
        "EXPLAIN QUERY PLAN SELECT path FROM files WHERE emb_row IN (1, 2)"))
    connection.close()
    assert "files_emb_row" in plan  # an indexed look-up, not a scan


def test_migrate_store_command(tmp_path, caplog):
    from cvnet.jetson.cli import main

    folders = [_csv_store(str(tmp_path / name), 2, [(np.ones((1, 2), np.float32),
                                                      "{}.png,ok,0,,\n".format(name))])
               for name in ("a", "b")]
    with caplog.at_level(logging.INFO):
        assert main(["migrate-store"] + folders) == 0
    assert "format 2 -> 3, 1 chunks, 1 embeddings, 1 files" in caplog.text
    assert all(read_meta(folder)["format_version"] == 3 for folder in folders)
    assert main(["migrate-store", str(tmp_path / "missing")]) == 1


def test_a_missing_index_beside_chunks_is_an_error_not_an_empty_store(tmp_path):
    """Review #18-1: an empty index made beside committed chunks made --resume delete them."""
    folder = _store(str(tmp_path / "s"), sizes=(3, 2, 4))
    os.remove(os.path.join(folder, INDEX_FILE))
    npys = sorted(name for name in os.listdir(folder) if name.endswith(".npy"))
    assert len(npys) == 3
    for opener in (StoreWriter, Store, lambda f: Store(f, repair=True)):
        with pytest.raises(StoreError, match="index.sqlite is missing.*migrate-store"):
            opener(folder)
    assert sorted(name for name in os.listdir(folder) if name.endswith(".npy")) == npys
    assert not os.path.exists(os.path.join(folder, INDEX_FILE))


def test_a_store_killed_before_its_index_gets_one(tmp_path):
    """A folder with meta.json and no chunk yet (killed right after it) is still resumable."""
    folder = _store(str(tmp_path / "s"), sizes=())
    os.remove(os.path.join(folder, INDEX_FILE))
    with StoreWriter(folder) as writer:
        assert writer.next_number == 0
    assert os.path.exists(os.path.join(folder, INDEX_FILE))


@pytest.mark.parametrize("bad", [np.zeros((4,), np.float32), np.zeros((2, 5), np.float32),
                                 np.zeros((0,), np.float32)])
def test_commit_refuses_a_wrong_shape_before_writing(tmp_path, bad):
    """Review #18-7: a 1-D or wrong-width chunk made the store unreadable."""
    folder = _store(str(tmp_path / "s"), sizes=(2,))
    rows = [IndexRow("n{}.png".format(i), "ok", 2 + i, "", "") for i in range(len(bad))]
    rows.append(IndexRow("x.jpg", "failed", -1, "empty", ""))
    with StoreWriter(folder) as writer:
        with pytest.raises(StoreError, match="chunk 1"):
            writer.commit(bad, rows)
    assert not os.path.exists(chunk_paths(folder, 1)[0])
    with Store(folder) as store:
        assert store.size == 2 and store.dim == 4


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_commit_refuses_non_finite_embeddings(tmp_path, value):
    """Review #18-2: NaN/inf rows reached the store and broke exact top-k."""
    folder = _store(str(tmp_path / "s"), sizes=(2,))
    bad = np.ones((3, 4), np.float32)
    bad[1, 2] = value
    rows = [IndexRow("n{}.png".format(i), "ok", 2 + i, "", "") for i in range(3)]
    with StoreWriter(folder) as writer:
        with pytest.raises(StoreError, match="chunk 1.*n1.png.*not finite"):
            writer.commit(bad, rows)
    assert not os.path.exists(chunk_paths(folder, 1)[0])


def _rows_from(first, count, prefix="new"):
    return [IndexRow("{}{}.png".format(prefix, i), "ok", first + i, "", "")
            for i in range(count)]


def test_a_reader_part_way_through_iter_rows_does_not_block_a_commit(tmp_path, monkeypatch):
    """Review #18-3: export-store's open SELECT held the lock; embed's COMMIT died after 60 s."""
    monkeypatch.setattr(store_index.SqliteIndex, "timeout", 1.0)
    monkeypatch.setattr(store_index, "_PAGE_ROWS", 1000)  # several pages, one taken
    folder = _store(str(tmp_path / "s"), sizes=(3000,))
    with Store(folder) as reader:
        rows = reader.iter_rows()
        assert next(rows).path == "f0-0.png"
        with StoreWriter(folder) as writer:
            writer.commit(np.zeros((2, 4), np.float32), _rows_from(3000, 2))
        assert sum(1 for _ in rows) == 3000  # its snapshot: the chunks it opened with
    with Store(folder) as store:
        assert store.size == 3002


def test_a_commit_blocked_by_a_lock_is_a_store_error(tmp_path, monkeypatch):
    """A lock held past the timeout: a StoreError naming the folder, not sqlite3's error."""
    monkeypatch.setattr(store_index.SqliteIndex, "timeout", 1.0)
    folder = _store(str(tmp_path / "s"), sizes=(3,))
    with StoreWriter(folder) as writer:
        other = sqlite3.connect(os.path.join(folder, INDEX_FILE), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="chunk 1 not committed.*locked.*--resume"):
                writer.commit(np.zeros((2, 4), np.float32), _rows_from(3, 2))
        finally:
            other.close()
    with StoreWriter(folder) as writer:  # --resume: the uncommitted .npy is redone
        assert (writer.next_number, writer.next_row) == (1, 3)
        writer.commit(np.zeros((2, 4), np.float32), _rows_from(3, 2))


def test_resume_checks_names_without_holding_every_committed_one(tmp_path):
    """Review #18-9: resuming held a set of every committed name (~120 B/row, 115 MiB at 1M)."""
    import tracemalloc

    count, name = 100000, "camera-07/2026-11-30/frame-{:08d}_crop-3.jpg"
    folder = str(tmp_path / "s")
    with StoreWriter.create(folder, {"format": FORMAT, "embedding_dim": 1,
                                     "dtype": "float32"}) as writer:
        for start in range(0, count, 25000):
            writer.commit(np.zeros((25000, 1), np.float32),
                          [IndexRow(name.format(start + i), "ok", start + i, "", "")
                           for i in range(25000)])
    listed = [name.format(i) for i in range(count - 50, count + 50)]  # 50 done, 50 new
    listed.append("caf\u00e9 100%.jpg")
    with StoreWriter(folder) as writer:
        tracemalloc.start()
        try:
            done = writer.committed_among(listed)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert done.tolist() == [True] * 50 + [False] * 51
    assert peak < 30 * count  # a page of 4096 names (~1.5 MB), not every name (~120 B/row)
