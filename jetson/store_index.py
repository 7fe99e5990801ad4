"""The embedding store's index: one SQLite file of per-file rows, read lazily (Python 3.6).

``index.sqlite`` (format 3 of :mod:`cvnet.jetson.store`) holds two tables::

    chunks(number, first_row, rows, files, committed_at)     one line per committed chunk
    files(seq, chunk, path, status, emb_row, kind, message, view, mtime)   one line per file

``files.emb_row`` is the file's row in the concatenated embeddings (-1 when it failed) and is
indexed, so a reader resolves the rows it needs (a match's winners) with a few indexed look-ups
and never holds the whole index: memory stays the same for a thousand rows or a million. Paths
are unique (a resumed run skips what is already there).

**A chunk is committed by one transaction** that inserts its ``chunks`` line and its ``files``
lines; its ``emb-NNNNN.npy`` is written and fsynced (file and folder) before the transaction
begins, so the transaction is the commit marker: an ``.npy`` without its ``chunks`` line is an
uncommitted chunk (a killed run) that ``--resume`` redoes. SQLite's rollback journal makes the
transaction atomic; ``synchronous=EXTRA`` makes it durable once it returns (FULL syncs the
journal and the database; EXTRA also syncs the folder after the journal is deleted, which is
the commit point in ``journal_mode=DELETE``). The file itself is created through
:func:`cvnet.core.fileio.atomic_path` (schema complete, fsynced, renamed, folder fsynced).
"""

import logging
import os
import sqlite3
import time
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from cvnet.core.errors import CVNetError
from cvnet.core.fileio import atomic_path

logger = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"
#: The schema's version, in the ``info`` table.
SCHEMA_VERSION = 1
#: Rows per ``IN (...)`` look-up (older SQLite builds allow 999 parameters).
LOOKUP_BATCH = 500
#: ``PRAGMA synchronous`` values: FULL = 2, EXTRA = 3.
_SYNC_FULL, _SYNC_EXTRA = 2, 3
#: What writers ask SQLite for; ``benchmarks/fsync_cost.py`` lowers it to measure the cost.
SYNCHRONOUS = "EXTRA"
_SCHEMA = (
    "CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE chunks (number INTEGER PRIMARY KEY, first_row INTEGER NOT NULL, "
    "rows INTEGER NOT NULL, files INTEGER NOT NULL, committed_at REAL NOT NULL)",
    "CREATE TABLE files (seq INTEGER PRIMARY KEY, chunk INTEGER NOT NULL, path TEXT NOT NULL, "
    "status TEXT NOT NULL, emb_row INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, "
    "view TEXT NOT NULL, mtime REAL)",
    "CREATE UNIQUE INDEX files_path ON files (path)",
    "CREATE INDEX files_emb_row ON files (emb_row)",
)
_COLUMNS = "path, status, emb_row, kind, message, view, mtime"
#: Rows per page of :meth:`SqliteIndex.iter_rows` (one complete statement each).
_PAGE_ROWS = 4096


class StoreError(CVNetError):
    """An embedding folder is missing, inconsistent, or belongs to another model."""


class IndexRow(NamedTuple):
    """One input file's outcome.

    Attributes:
        path: The file as listed (relative to ``meta["root"]`` for a walked folder), as escaped
            text (:func:`cvnet.core.filenames.encode_name`); ``store.file_path`` gives the path
            to open.
        status: ``"ok"`` (it has an embedding) or ``"failed"`` (reported and skipped).
        row: Its row in the concatenated embeddings; -1 when failed.
        kind: ``;``-separated kinds: the failure (``empty``, ``truncated``, ``not_image``, ...)
            or what was done to a good file (``grayscale``, ``rgba``, ``16bit``, ``tiny``,
            ``huge``, ``suffix``); empty for a plain good file.
        message: The reason, in words.
        view: ``"A"`` (aerial), ``"G"`` (ground) or ``""`` (unknown): ``cvnet-embed --view``.
        mtime: The file's modification time when it was embedded, seconds since the epoch (UTC);
            None where unknown (stores of format 1 and 2, unreadable files).
    """

    path: str
    status: str
    row: int
    kind: str
    message: str
    view: str = ""
    mtime: Optional[float] = None


class ChunkRecord(NamedTuple):
    """A committed chunk as the index records it.

    Attributes:
        number: The chunk's number (``emb-NNNNN.npy``).
        first_row: Its first embedding row.
        rows: Its good rows (the ``.npy``'s length).
        files: Its index rows, good and failed.
        committed_at: When it was committed, seconds since the epoch (formats 1-2: the
            modification time of its CSV index, written at its commit).
    """

    number: int
    first_row: int
    rows: int
    files: int
    committed_at: float


def _row(values: Sequence) -> IndexRow:
    return IndexRow(values[0], values[1], int(values[2]), values[3], values[4], values[5],
                    values[6])


def create_index(folder: str, chunks: Iterable[Tuple[ChunkRecord, Sequence[IndexRow]]] = ()
                 ) -> str:
    """Creates ``index.sqlite`` in ``folder`` atomically and durably; returns its path.

    Args:
        folder: The store folder.
        chunks: Committed chunks to hold from the start, each with its index rows (a migration
            from the CSV index), inserted before the file gets its name.

    Raises:
        StoreError: It exists already, or ``chunks`` names a path twice.
    """
    path = os.path.join(folder, INDEX_FILE)
    if os.path.exists(path):
        raise StoreError("{} exists already".format(path))
    with atomic_path(path) as tmp:  # an empty file: SQLite makes it a new database
        connection = sqlite3.connect(tmp, isolation_level=None)
        try:
            connection.execute("BEGIN")
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute("INSERT INTO info VALUES ('schema_version', ?)",
                               (str(SCHEMA_VERSION),))
            for record, rows in chunks:
                _insert_chunk(connection, record, rows)
            connection.execute("COMMIT")
        except sqlite3.IntegrityError as err:
            raise StoreError("{}: {} (a file listed twice?)".format(path, err))
        finally:
            connection.close()
    return path


def _insert_chunk(connection: sqlite3.Connection, record: ChunkRecord,
                  rows: Sequence[IndexRow]) -> None:
    connection.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)", record)
    connection.executemany(
        "INSERT INTO files (chunk, {}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)".format(_COLUMNS),
        ((record.number,) + tuple(row) for row in rows))


class SqliteIndex:
    """An open ``index.sqlite``: committed chunks, rows by embedding row, appends.

    Args:
        folder: The store folder.
        writable: Open for :meth:`commit` (a writer), with the durability settings. A reader
            changes nothing; it opens the file read-only where it cannot write it (a
            read-only card), and read-write elsewhere so that SQLite can roll back the journal
            of a transaction that a killed writer left behind.

    Raises:
        StoreError: The file is missing, not an index, or of a newer schema.
    """

    #: Seconds a statement waits for another connection's lock before it fails.
    timeout = 60.0

    def __init__(self, folder: str, writable: bool = False):
        self.path = os.path.join(folder, INDEX_FILE)
        if not os.path.isfile(self.path):
            raise StoreError("{}: no index; a folder of store format 3 commits its chunks there "
                             "(was it copied without it?)".format(self.path))
        read_only = not writable and not (os.access(self.path, os.W_OK)
                                          and os.access(folder, os.W_OK))
        target = "file:{}?mode=ro".format(_uri_quote(os.path.abspath(self.path))) \
            if read_only else self.path
        try:
            self._db = sqlite3.connect(target, isolation_level=None, timeout=self.timeout,
                                       uri=read_only, check_same_thread=False)
            version = self._db.execute(
                "SELECT value FROM info WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as err:
            raise StoreError("{}: not a cvnet store index ({})".format(self.path, err))
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise StoreError("{}: index schema {}, this cvnet reads {}; update cvnet".format(
                self.path, version and version[0], SCHEMA_VERSION))
        if writable:
            self._durable()

    def _durable(self) -> None:
        """Rollback journal, synced on every commit (the folder too where SQLite can)."""
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA synchronous={}".format(SYNCHRONOUS))
        if SYNCHRONOUS == "EXTRA" and self.synchronous != _SYNC_EXTRA:  # SQLite < 3.12
            self._db.execute("PRAGMA synchronous=FULL")
            logger.warning("%s: SQLite %s has no synchronous=EXTRA; using FULL (a commit just "
                           "before a power loss may be rolled back, never torn)", self.path,
                           sqlite3.sqlite_version)

    @property
    def synchronous(self) -> int:
        """``PRAGMA synchronous`` of this connection (3: EXTRA)."""
        return int(self._db.execute("PRAGMA synchronous").fetchone()[0])

    def chunks(self) -> List[ChunkRecord]:
        """The committed chunks, in order."""
        return [ChunkRecord(*line) for line in self._db.execute(
            "SELECT number, first_row, rows, files, committed_at FROM chunks ORDER BY number")]

    def commit(self, number: int, first_row: int, rows: Sequence[IndexRow]) -> ChunkRecord:
        """Commits one chunk's index rows in one transaction (the chunk's commit marker).

        Raises:
            StoreError: A path is already in the index (nothing of the chunk is committed).
        """
        good = sum(1 for row in rows if row.status == "ok")
        record = ChunkRecord(number, first_row, good, len(rows), time.time())
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                _insert_chunk(self._db, record, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as err:
            raise StoreError("{}: chunk {} not committed: {} (a file listed twice, or a chunk "
                             "number reused)".format(self.path, number, err))
        except sqlite3.OperationalError as err:
            if not _is_busy(err):
                raise
            raise StoreError("{}: chunk {} not committed: the index stayed locked by another "
                             "process for {:.0f} s ({}); find what holds {} open (another "
                             "cvnet-embed, or a tool other than cvnet reading it), then rerun "
                             "with --resume".format(os.path.dirname(self.path), number,
                                                    self.timeout, err, INDEX_FILE))
        return record

    def lookup(self, rows: Iterable[int]) -> Dict[int, IndexRow]:
        """The index rows of some embedding rows (indexed look-ups; unknown rows are absent)."""
        wanted = sorted(set(int(row) for row in rows if row >= 0))
        found = {}
        for start in range(0, len(wanted), LOOKUP_BATCH):
            batch = wanted[start:start + LOOKUP_BATCH]
            query = "SELECT {} FROM files WHERE emb_row IN ({})".format(
                _COLUMNS, ",".join("?" * len(batch)))
            for line in self._db.execute(query, batch):
                found[int(line[2])] = _row(line)
        return found

    def iter_rows(self, chunks: Optional[int] = None) -> Iterator[IndexRow]:
        """Every index row, good and failed, in processing order (streamed, not held).

        Read in pages of :data:`_PAGE_ROWS` rows, each by a complete statement: between pages
        (while the caller works on them) no statement is open, so no lock is held and a
        writer's commit goes through, however slowly the rows are consumed.

        Args:
            chunks: Only the first ``chunks`` chunks (a reader's snapshot).
        """
        for line in self._pages(_COLUMNS, chunks):
            yield _row(line)

    def iter_paths(self) -> Iterator[str]:
        """Every committed path (escaped text), in processing order, paged as :meth:`iter_rows`."""
        for line in self._pages("path"):
            yield line[0]

    def _pages(self, columns: str, chunks: Optional[int] = None) -> Iterator[Tuple]:
        """``columns`` of every ``files`` line in ``seq`` order, a page per complete statement."""
        limit = "" if chunks is None else " AND chunk < {:d}".format(chunks)
        query = "SELECT seq, {} FROM files WHERE seq > ?{} ORDER BY seq LIMIT {:d}".format(
            columns, limit, _PAGE_ROWS)
        last = -1
        while True:
            page = self._db.execute(query, (last,)).fetchall()
            for line in page:
                yield line[1:]
            if len(page) < _PAGE_ROWS:
                return
            last = page[-1][0]

    def has_paths(self, paths: Sequence[str]) -> set:
        """Those of ``paths`` (escaped text, as stored) that are in the index (indexed look-ups,
        :data:`LOOKUP_BATCH` at a time)."""
        found = set()
        for start in range(0, len(paths), LOOKUP_BATCH):
            batch = list(paths[start:start + LOOKUP_BATCH])
            query = "SELECT path FROM files WHERE path IN ({})".format(",".join("?" * len(batch)))
            found.update(line[0] for line in self._db.execute(query, batch))
        return found

    def close(self) -> None:
        """Closes the connection."""
        self._db.close()


def _is_busy(err: sqlite3.OperationalError) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _uri_quote(path: str) -> str:
    """A path for an SQLite ``file:`` URI (``?``, ``#`` and ``%`` escaped; bytes kept)."""
    from urllib.parse import quote

    return quote(os.fsencode(path), safe="/")
