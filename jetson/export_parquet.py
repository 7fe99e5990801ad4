"""A store as one Parquet file, the format distributed vector engines ingest directly.

``python3 -m cvnet.jetson export-store GALLERY -o gallery.parquet`` writes one row per embedding,
streamed in row groups (memory: one group), with these columns:

=============== ============================== ==================================================
column          Arrow type                     what
=============== ============================== ==================================================
``id``          int64                          the embedding row, plus ``--id-offset``
``path``        string                         the file, escaped (:mod:`cvnet.core.filenames`)
``view``        string                         ``A``, ``G`` or empty (unknown)
``mtime``       timestamp[us, UTC], nullable   the file's modification time when embedded
``embedded_at`` timestamp[us, UTC], nullable   when its chunk was committed
``kind``        string                         what was done to the file (``grayscale`` ...)
``model_hash``  string (dictionary)            the model that embedded it
``vector``      fixed_size_list<float>[D]      the embedding (float32, or float16 on request)
=============== ============================== ==================================================

The whole ``meta.json`` travels in the file's key-value metadata (``cvnet.meta``). Engines that
read Parquet (LanceDB, Milvus bulk insert, Qdrant through its clients, DuckDB/pgvector loaders)
take it as it is; docs/gallery.md walks through LanceDB. pyarrow is imported only here
(``pip install pyarrow``, the ``cvnet[gallery]`` extra; a host-side tool).
"""

import json
import logging
from typing import Any, Dict, Iterator, List

import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import atomic_path
from cvnet.jetson.store import IndexRow, Store, StoreError

logger = logging.getLogger(__name__)

#: Rows per Parquet row group (and per read block).
DEFAULT_GROUP_ROWS = 65536
VECTOR_DTYPES = ("float32", "float16")
PYARROW_HINT = ("pip install pyarrow (a host-side extra: pip install 'cvnet[gallery]'); copy the "
                "store to a host to export it")


def _require_pyarrow() -> Any:
    from cvnet.engines.deps import require

    require("pyarrow", "export-store (Parquet)", PYARROW_HINT)
    return require("pyarrow.parquet", "export-store (Parquet)", PYARROW_HINT)


def parquet_schema(pa: Any, dim: int, vector_dtype: str = "float32") -> Any:
    """The export's Arrow schema for ``dim``-long vectors."""
    utc = pa.timestamp("us", tz="UTC")
    value = pa.float32() if vector_dtype == "float32" else pa.float16()
    return pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("view", pa.string(), nullable=False),
        pa.field("mtime", utc),
        pa.field("embedded_at", utc),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("model_hash", pa.dictionary(pa.int32(), pa.string())),
        pa.field("vector", pa.list_(value, dim), nullable=False),
    ])


def _good_rows(store: Store) -> Iterator[IndexRow]:
    for row in store.iter_rows():
        if row.status == "ok":
            yield row


def _micros(seconds: List[Any]) -> List[Any]:
    return [None if value is None else int(round(value * 1e6)) for value in seconds]


def export_parquet(folder: str, path: str, *, id_offset: int = 0,
                   vector_dtype: str = "float32",
                   group_rows: int = DEFAULT_GROUP_ROWS) -> Dict[str, Any]:
    """Writes a store's embeddings and their index rows to one Parquet file, atomically.

    Args:
        folder: The store.
        path: The ``.parquet`` file.
        id_offset: Added to every row number (distinct ids for several stores in one table).
        vector_dtype: ``float32`` or ``float16`` vectors.
        group_rows: Rows per row group.

    Returns:
        ``{"path", "rows", "dim", "model_hash", "vector_dtype"}``.

    Raises:
        MissingDependencyError: pyarrow is not installed.
        StoreError: The store is invalid or empty.
        ConfigError: A bad ``vector_dtype``.
    """
    if vector_dtype not in VECTOR_DTYPES:
        raise ConfigError("--vector-dtype {!r}: expected one of {}".format(vector_dtype,
                                                                          VECTOR_DTYPES))
    parquet = _require_pyarrow()
    import pyarrow as pa

    with Store(folder) as store:
        if store.size == 0:
            raise StoreError("{}: no embeddings to export".format(folder))
        schema = parquet_schema(pa, store.dim, vector_dtype)
        meta_text = json.dumps(store.meta, sort_keys=True)
        schema = schema.with_metadata({b"cvnet.meta": meta_text.encode("utf-8")})
        model_hash = str(store.meta.get("model_hash"))
        rows = _good_rows(store)
        with atomic_path(path) as tmp:
            writer = parquet.ParquetWriter(tmp, schema)
            try:
                for first_row, block in store.blocks(group_rows):
                    index = [next(rows) for _ in range(len(block))]
                    if [row.row for row in index] != list(range(first_row,
                                                                first_row + len(block))):
                        raise StoreError("{}: index rows out of step with the embeddings at "
                                         "row {}".format(folder, first_row))
                    committed = [store.chunk_of(row.row).committed_at for row in index]
                    flat = pa.array(block.astype(vector_dtype).reshape(-1))
                    columns = [
                        pa.array(np.arange(first_row, first_row + len(block), dtype=np.int64)
                                 + id_offset),
                        pa.array([row.path for row in index], pa.string()),
                        pa.array([row.view for row in index], pa.string()),
                        pa.array(_micros([row.mtime for row in index]), schema.field(3).type),
                        pa.array(_micros(committed), schema.field(4).type),
                        pa.array([row.kind for row in index], pa.string()),
                        pa.array([model_hash] * len(block)).dictionary_encode(),
                        pa.FixedSizeListArray.from_arrays(flat, store.dim),
                    ]
                    writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            finally:
                writer.close()
        logger.info("%s: %d rows of %s (%d-d %s vectors)", path, store.size, folder, store.dim,
                    vector_dtype)
        return {"path": path, "rows": store.size, "dim": store.dim, "model_hash": model_hash,
                "vector_dtype": vector_dtype}
