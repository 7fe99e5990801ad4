"""Stores of format 1 and 2: the per-chunk CSV index, read and migrated (Python 3.6).

Before format 3 each chunk's index rows lived in ``index-NNNNN.csv`` beside its
``emb-NNNNN.npy`` (``path,status,row,kind,message``; format 1 wrote names as plain text, format 2
escapes them). :class:`CsvIndex` reads such a folder with the interface of
:class:`cvnet.jetson.store_index.SqliteIndex`, one chunk's CSV at a time (memory bounded by a
chunk, time by the whole index); :func:`cvnet.jetson.store.migrate_store` turns the folder into
format 3 in place (``python3 -m cvnet.jetson migrate-store DIR``), after which matching reads
only the rows it needs.
"""

import bisect
import csv
import logging
import os
import re
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.fileio import fsync_path
from cvnet.core.filenames import encode_name, name_from_utf8
from cvnet.jetson.store_index import ChunkRecord, IndexRow, StoreError, create_index

logger = logging.getLogger(__name__)

INDEX_COLUMNS = ("path", "status", "row", "kind", "message")
_CHUNK = re.compile(r"^(emb|index)-(\d{5,})\.(npy|csv)$")


def chunk_paths(folder: str, number: int) -> Tuple[str, str]:
    """The ``(emb-NNNNN.npy, index-NNNNN.csv)`` paths of chunk ``number`` (the CSV: formats 1-2)."""
    return (os.path.join(folder, "emb-{:05d}.npy".format(number)),
            os.path.join(folder, "index-{:05d}.csv".format(number)))


def chunk_numbers(folder: str) -> Tuple[List[int], List[int]]:
    """The numbers of the ``emb-NNNNN.npy`` and of the ``index-NNNNN.csv`` files, sorted."""
    embs, indexes = [], []
    for name in os.listdir(folder):
        match = _CHUNK.match(name)
        if match and (match.group(1), match.group(3)) in (("emb", "npy"), ("index", "csv")):
            (embs if match.group(1) == "emb" else indexes).append(int(match.group(2)))
    return sorted(embs), sorted(indexes)


def read_index_csv(path: str, version: int) -> Iterator[IndexRow]:
    """The rows of one ``index-NNNNN.csv``, names in today's escaped form.

    Raises:
        StoreError: A wrong header or a line with the wrong number of fields.
    """
    with open(path, "r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if tuple(header or ()) != INDEX_COLUMNS:
            raise StoreError("{}: header {}, expected {}".format(path, header,
                                                                 ",".join(INDEX_COLUMNS)))
        for line in reader:
            if len(line) != len(INDEX_COLUMNS):
                raise StoreError("{}: line {} has {} fields, expected {}".format(
                    path, reader.line_num, len(line), len(INDEX_COLUMNS)))
            name = line[0] if version >= 2 else encode_name(name_from_utf8(line[0]))
            yield IndexRow(name, line[1], int(line[2]), line[3], line[4])


class CsvIndex:
    """The CSV index of a format 1 or 2 folder, checked chunk by chunk when opened.

    Args:
        folder: The store folder.
        version: Its ``format_version`` (1: plain names, 2: escaped names).

    Raises:
        StoreError: An index without its ``.npy``, numbering gaps, or a chunk whose good rows
            disagree with its ``.npy``.
    """

    def __init__(self, folder: str, version: int):
        self.folder, self.version = folder, version
        embs, indexes = chunk_numbers(folder)
        missing = sorted(set(indexes) - set(embs))
        if missing:
            raise StoreError("{}: chunk(s) {} have an index but no embeddings file; the folder "
                             "was edited by hand: delete those index files".format(folder,
                                                                                    missing))
        if indexes != list(range(len(indexes))):
            raise StoreError("{}: chunk numbers {} have gaps; expected 0..{}".format(
                folder, indexes, len(indexes) - 1))
        self._chunks, next_row = [], 0
        for number in indexes:
            emb_path, index_path = chunk_paths(folder, number)
            rows = list(read_index_csv(index_path, version))  # one chunk at a time
            good = [row.row for row in rows if row.status == "ok"]
            length = np.load(emb_path, mmap_mode="r").shape[0]
            if good != list(range(next_row, next_row + len(good))) or length != len(good):
                raise StoreError("{}: {} good rows numbered {}..., but {} holds {} rows; the chunk "
                                 "is inconsistent: delete both files of chunk {}".format(
                                     index_path, len(good), good[:1], emb_path, length, number))
            self._chunks.append(ChunkRecord(number, next_row, len(good), len(rows),
                                            os.path.getmtime(index_path)))
            next_row += len(good)
        self._firsts = [chunk.first_row for chunk in self._chunks]

    def chunks(self) -> List[ChunkRecord]:
        """The committed chunks (those with an index), in order."""
        return list(self._chunks)

    def lookup(self, rows: Iterable[int]) -> Dict[int, IndexRow]:
        """The index rows of some embedding rows: only the CSVs that hold them are read."""
        by_chunk = {}  # type: Dict[int, set]
        for row in set(int(row) for row in rows if row >= 0):
            number = bisect.bisect_right(self._firsts, row) - 1
            if number >= 0:
                by_chunk.setdefault(number, set()).add(row)
        found = {}
        for number, wanted in sorted(by_chunk.items()):
            for line in read_index_csv(chunk_paths(self.folder, number)[1], self.version):
                if line.row in wanted:
                    found[line.row] = line
        return found

    def iter_rows(self, chunks: Optional[int] = None) -> Iterator[IndexRow]:
        """Every index row in processing order, one CSV at a time."""
        for chunk in self._chunks[:chunks]:
            for line in read_index_csv(chunk_paths(self.folder, chunk.number)[1], self.version):
                yield line

    def close(self) -> None:
        """Nothing to close: each CSV is closed after reading."""


def sqlite_from_csv(folder: str, chunks: Sequence[ChunkRecord], index: CsvIndex) -> List[str]:
    """Moves a format 1-2 folder's CSV index into ``index.sqlite``; returns the CSVs removed.

    Crash-safe in three steps, each atomic and durable: ``index.sqlite`` is written complete
    (a left-over one from an interrupted migration is replaced), then ``meta.json`` says format
    3 (the switch), then the CSV files are removed. Interrupted before the switch, the folder is
    still format 2 and the migration starts again; after it, only the CSVs are left to remove,
    which a second run does.

    Args:
        folder: The store folder (the caller has checked and written nothing yet).
        chunks: ``index.chunks()``: the committed chunks.
        index: The folder's CSV index.
    """
    path = os.path.join(folder, "index.sqlite")
    if os.path.exists(path):
        os.remove(path)  # a half-done migration's: the CSVs are still the truth

    def rows_of(chunk):
        return list(read_index_csv(chunk_paths(folder, chunk.number)[1], index.version))

    create_index(folder, ((chunk, rows_of(chunk)) for chunk in chunks))
    return [chunk_paths(folder, chunk.number)[1] for chunk in chunks]


def remove_csv_index(folder: str, paths: Sequence[str]) -> None:
    """Removes the CSV files a migration replaced, then fsyncs the folder."""
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
    fsync_path(folder, folder=True)
    logger.info("%s: removed %d CSV index files", folder, len(paths))
