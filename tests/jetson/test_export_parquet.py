"""The Parquet export, read back with pyarrow: ids, paths, views, times, model hash, vectors."""

import datetime
import json
import os
import sys

import numpy as np
import pytest

from cvnet.jetson.cli import main
from cvnet.jetson.store import load_embeddings
from tests.jetson.stores import make_store

pytestmark = pytest.mark.device


def test_export_reads_back_with_every_column(tmp_path, capsys):
    parquet = pytest.importorskip("pyarrow.parquet")
    rng = np.random.RandomState(0)
    folder = make_store(str(tmp_path / "g"), rng.randn(45, 6).astype(np.float16), chunk=10,
                        view="G", model_hash="m" * 64, operating_points={"A2G": 0.4})
    path = str(tmp_path / "g.parquet")
    assert main(["export-store", folder, "-o", path, "--id-offset", "1000"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 45
    table = parquet.read_table(path)
    embeddings, rows, meta = load_embeddings(folder)
    good = [row for row in rows if row.status == "ok"]
    assert table.column_names == ["id", "path", "view", "mtime", "embedded_at", "kind",
                                  "model_hash", "vector"]
    assert table.column("id").to_pylist() == list(range(1000, 1045))
    assert table.column("path").to_pylist() == [row.path for row in good]
    assert set(table.column("view").to_pylist()) == {"G"}
    assert set(table.column("model_hash").to_pylist()) == {"m" * 64}
    first = table.column("mtime")[0].as_py()
    assert first == datetime.datetime(2020, 9, 13, 12, 26, 40, tzinfo=datetime.timezone.utc)
    assert all(value is not None for value in table.column("embedded_at").to_pylist())
    vectors = np.array(table.column("vector").to_pylist(), np.float32)
    np.testing.assert_array_equal(vectors, embeddings.astype(np.float32))
    stored = json.loads(table.schema.metadata[b"cvnet.meta"])
    assert stored["operating_points"] == {"A2G": 0.4} and stored == meta
    assert main(["export-store", folder, "-o", str(tmp_path / "h.parquet"), "--vector-dtype",
                 "float16"]) == 0
    half = parquet.read_table(str(tmp_path / "h.parquet"))
    assert str(half.schema.field("vector").type) == "fixed_size_list<element: halffloat>[6]"
    assert not [name for name in os.listdir(str(tmp_path)) if name.endswith(".tmp")]


def test_without_pyarrow_the_export_says_how_to_install(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    folder = make_store(str(tmp_path / "g"), np.ones((2, 3), np.float32))
    assert main(["export-store", folder, "-o", str(tmp_path / "g.parquet")]) == 1
    assert "pip install pyarrow" in caplog.text
    assert not os.path.exists(str(tmp_path / "g.parquet"))
