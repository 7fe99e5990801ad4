"""Small stores for the tests, written through the store's own writer."""

import os
import sqlite3

from cvnet.jetson.store import FORMAT, INDEX_FILE, IndexRow, StoreWriter


def make_store(folder, embeddings, chunk=7, model_hash="a" * 64, view="", failed=True, **meta):
    """A store holding ``embeddings`` in chunks of ``chunk`` rows (plus one failed file).

    Rows are named ``<row>.png``, with ``view`` and an mtime of ``1.6e9 + row`` seconds.
    """
    os.makedirs(folder)
    meta = dict({"format": FORMAT, "model_hash": model_hash,
                 "embedding_dim": embeddings.shape[1], "dtype": str(embeddings.dtype),
                 "root": folder, "engine": "x.onnx"}, **meta)
    with StoreWriter.create(folder, meta) as writer:
        for start in range(0, len(embeddings), chunk):
            part = embeddings[start:start + chunk]
            rows = [IndexRow("{}.png".format(start + i), "ok", start + i, "", "", view,
                             1.6e9 + start + i) for i in range(len(part))]
            if start == 0 and failed:
                rows.insert(1, IndexRow("bad.jpg", "failed", -1, "empty", "file is empty", view))
            writer.commit(part, rows)
    return folder


def uncommit(folder, number):
    """What a kill between chunk ``number``'s ``.npy`` and its index transaction leaves: the
    ``.npy`` without its index rows (``number`` must be the last chunk)."""
    connection = sqlite3.connect(os.path.join(folder, INDEX_FILE), isolation_level=None)
    try:
        assert connection.execute("SELECT MAX(number) FROM chunks").fetchone()[0] == number
        connection.execute("DELETE FROM files WHERE chunk = ?", (number,))
        connection.execute("DELETE FROM chunks WHERE number = ?", (number,))
    finally:
        connection.close()
