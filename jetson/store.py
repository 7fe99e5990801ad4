"""The embedding store: chunked, resumable output of ``cvnet-embed`` (Python 3.6, no torch).

An output folder (format 3) holds::

    meta.json            format, the engine's model hash / dim / normalisation, dtype, ...
    emb-00000.npy        (N_0, D) float32 or float16: embeddings of chunk 0's good images
    emb-00001.npy ...
    index.sqlite         the committed chunks and one row per file: path, status, row, kind,
                         message, view, mtime (:mod:`cvnet.jetson.store_index`)

``meta.json`` is an open record: readers keep the fields they do not know (other tools add
their own, such as operating points) and rewrite it whole. Rows are numbered globally, so
``np.concatenate`` of the chunks in order is the embedding matrix and the index row whose
``row`` is ``i`` names embedding ``i``.

File names are bytes: ``path`` in the index and ``root``/``source`` in ``meta.json`` are escaped
text (:func:`cvnet.core.filenames.encode_name`: UTF-8 as it reads, any other byte and ``%`` as
``%XX``), so any name the file system allows is stored exactly and reads back as the same bytes
under any locale; :func:`file_path` turns a row back into a path to open.

**Commits.** A chunk is written ``.npy`` first (atomically and durably,
:mod:`cvnet.core.fileio`: temporary file, fsync, ``os.replace``, fsync of the folder), then its
index rows in one SQLite transaction, the commit marker. An ``.npy`` without its index rows (a
run killed between the two) is not part of the store: readers skip it with a warning and
``cvnet-embed --resume`` deletes and redoes it.

**Reading in bounded memory.** :class:`Store` reads the committed chunks' list and the ``.npy``
headers when it opens, never the per-file rows: :meth:`Store.blocks` streams the embeddings in
blocks of a chosen size (read into one reused buffer, float16 widened to float32),
:meth:`Store.vectors` reads chosen rows, :meth:`Store.lookup` resolves chosen rows' index rows
(indexed look-ups). Matching a million-row gallery holds one block and the winners.

Formats 1 and 2 kept each chunk's rows in ``index-NNNNN.csv``: they are still read
(:mod:`cvnet.jetson.store_legacy`, one CSV at a time) and :func:`migrate_store` turns them into
format 3 in place (``python3 -m cvnet.jetson migrate-store DIR``).

Example:
    >>> with Store("gallery") as store:               # checks the chunks, reads no rows
    ...     for first_row, block in store.blocks(4096):  # (n, D) float32, reused buffer
    ...         ...
    ...     store.lookup([17, 3])[17].path                # 'a/17.jpg'
    >>> embeddings, rows, meta = load_embeddings("small")   # everything, for small folders
"""

import bisect
import hashlib
import io
import json
import logging
import os
import re
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.fileio import make_folders, write_bytes_atomic, write_text_atomic
from cvnet.core.filenames import decode_name, encode_name, name_from_utf8, native_name
from cvnet.jetson.store_index import (INDEX_FILE, LOOKUP_BATCH, ChunkRecord, IndexRow,
                                      SqliteIndex, StoreError, create_index)
from cvnet.jetson.store_legacy import (CsvIndex, chunk_numbers, chunk_paths, remove_csv_index,
                                       sqlite_from_csv)

__all__ = ["FORMAT", "FORMAT_VERSION", "READ_VERSIONS", "META_FILE", "INDEX_FILE", "IndexRow",
           "StoreError", "ChunkFile", "Store", "StoreWriter", "read_meta", "write_meta",
           "check_finite", "file_path", "chunk_paths", "write_chunk", "load_embeddings",
           "migrate_store"]

logger = logging.getLogger(__name__)

#: ``meta.json``'s format name and version.
FORMAT = "cvnet-embeddings"
FORMAT_VERSION = 3
#: Versions this code reads: 1 wrote names as plain text, 2 escapes them (both with a CSV index
#: per chunk), 3 keeps the index in ``index.sqlite``.
READ_VERSIONS = (1, 2, 3)
META_FILE = "meta.json"
#: Embedding dtypes a store holds.
DTYPES = ("float32", "float16")
#: Names that every cvnet escapes alike: printable ASCII without ``%``.
_PLAIN_NAME = re.compile(r"[ -$&-~]*\Z")


def read_meta(folder: str) -> Dict[str, Any]:
    """``meta.json`` of an embedding folder (every field, known or not).

    Raises:
        StoreError: It is missing or not a cvnet embedding folder.
    """
    path = os.path.join(folder, META_FILE)
    try:
        with open(path, "r", encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError) as err:
        raise StoreError("{}: cannot read {} ({}); is this a folder written by cvnet-embed?"
                         .format(folder, META_FILE, err))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError("{}: format {!r}, expected {!r}".format(
            path, meta.get("format") if isinstance(meta, dict) else meta, FORMAT))
    if meta.get("format_version", 1) not in READ_VERSIONS:
        raise StoreError("{}: format version {}, but this cvnet reads versions {}; update "
                         "cvnet".format(path, meta.get("format_version"), READ_VERSIONS))
    if meta.get("format_version", 1) == 1:  # plain names: escape them as version 2 does
        meta = dict(meta, **{key: encode_name(name_from_utf8(meta[key]))
                             for key in ("root", "source") if isinstance(meta.get(key), str)})
    return meta


def write_meta(folder: str, meta: Dict[str, Any]) -> None:
    """Writes ``meta.json`` atomically (all of ``meta``: fields other tools added are kept)."""
    write_text_atomic(os.path.join(folder, META_FILE),
                      json.dumps(meta, indent=2, sort_keys=True) + "\n")


def file_path(root: str, name: str) -> str:
    """The path to open for an index row: ``file_path(meta["root"], row.path)``.

    Args:
        root: ``meta["root"]`` (escaped text).
        name: ``IndexRow.path`` (escaped text), relative to ``root`` or absolute.
    """
    return os.path.join(native_name(root), native_name(name))


class ChunkFile(NamedTuple):
    """A committed chunk and where its embeddings lie in its ``.npy``.

    Attributes:
        number: The chunk's number.
        emb_path: Its ``emb-NNNNN.npy``.
        first_row: Its first embedding row.
        rows: Its embeddings (good files).
        files: Its index rows (good and failed).
        committed_at: When it was committed, seconds since the epoch.
        offset: Where the (rows, D) C-ordered data start in the file, bytes.
        dtype: ``"float32"`` or ``"float16"``.
    """

    number: int
    emb_path: str
    first_row: int
    rows: int
    files: int
    committed_at: float
    offset: int
    dtype: str


def _npy_layout(path: str) -> Tuple[Tuple[int, ...], str, int]:
    """``(shape, dtype name, data offset)`` of an ``.npy`` file, from its header alone.

    Raises:
        StoreError: Not an ``.npy`` of little-endian float32/float16 rows in C order.
    """
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(handle)
            offset = handle.tell()
    except (OSError, ValueError) as err:
        raise StoreError("{}: not a readable .npy file ({}); delete the chunk and resume".format(
            path, err))
    if fortran or len(shape) != 2 or dtype.name not in DTYPES or dtype.byteorder == ">":
        raise StoreError("{}: holds {} {}{}; a store holds (N, D) float32 or float16 rows in C "
                         "order".format(path, shape, dtype, " (Fortran order)" if fortran else ""))
    return tuple(shape), dtype.name, offset


def _open_index(folder: str, version: int) -> Any:
    if version >= 3:
        if os.path.exists(os.path.join(folder, INDEX_FILE)):
            return SqliteIndex(folder)
        _require_index(folder)
        return None
    return CsvIndex(folder, version)


def _require_index(folder: str) -> None:
    """Lets a format 3 folder lack ``index.sqlite`` only while it holds no ``emb-*.npy``.

    A store killed between ``meta.json`` and its index has no chunks: its index can be made
    anew. With chunks, the index is the only record of which are committed and which files they
    hold; making an empty one would turn every chunk into an uncommitted one (that
    ``--resume`` deletes).

    Raises:
        StoreError: ``emb-*.npy`` files but no ``index.sqlite``.
    """
    numbers = chunk_numbers(folder)[0]
    if numbers:
        raise StoreError(
            "{}: {} is missing but the folder holds {} chunk(s) (emb-*.npy); nothing was "
            "changed. Restore {} from where the folder was copied, or, if meta.json says "
            "format_version 1 or 2 (an index-NNNNN.csv per chunk), run python3 -m cvnet.jetson "
            "migrate-store {}".format(folder, INDEX_FILE, len(numbers), INDEX_FILE, folder))


class Store:
    """A store's committed chunks, read lazily: what a reader sees when it opens the folder.

    Opening checks every committed chunk against its ``.npy`` header (length, width, dtype)
    without reading embeddings or index rows. Chunks committed later (by a run still going)
    are not seen; uncommitted ``.npy`` files are skipped with a warning, or deleted with
    ``repair``.

    Args:
        folder: The store folder.
        repair: Delete uncommitted ``.npy`` files (``cvnet-embed --resume`` does).

    Attributes:
        folder: The folder.
        meta: Its ``meta.json``.
        chunks: The committed chunks (:class:`ChunkFile`), in order.
        size: Embedding rows (good files) in all of them.
        dim: The embedding length, D.

    Raises:
        StoreError: Not a store, chunks that disagree with their files or each other, or
            ``emb-*.npy`` files without the ``index.sqlite`` that commits them.
    """

    def __init__(self, folder: str, repair: bool = False):
        self.folder = folder
        self.meta = read_meta(folder)
        self.version = int(self.meta.get("format_version", 1))
        self.index = _open_index(folder, self.version)
        try:
            records = self.index.chunks() if self.index is not None else []
            self.chunks = self._check(records, repair)
        except BaseException:
            self.close()
            raise
        self.size = sum(chunk.rows for chunk in self.chunks)
        width = next(iter(self._widths), None)
        self.dim = int(self.meta.get("embedding_dim") or width or 0)
        if width is not None and width != self.dim:
            self.close()
            raise StoreError("{}: meta.json says {}-d embeddings, the chunks hold {}-d".format(
                folder, self.dim, width))
        self._firsts = [chunk.first_row for chunk in self.chunks]

    def _check(self, records: Sequence[ChunkRecord], repair: bool) -> List[ChunkFile]:
        numbers = [record.number for record in records]
        if numbers != list(range(len(numbers))):
            raise StoreError("{}: committed chunk numbers {} have gaps; the index was edited "
                             "by hand".format(self.folder, numbers))
        uncommitted = [number for number in chunk_numbers(self.folder)[0]
                       if number >= len(records)]
        for number in uncommitted:
            path = chunk_paths(self.folder, number)[0]
            if repair:
                os.remove(path)
                logger.info("%s: removed uncommitted %s (a killed run's; redone now)",
                            self.folder, os.path.basename(path))
            else:
                logger.warning("%s: %s is not committed (a run still going, or killed: "
                               "cvnet-embed --resume finishes it); reading the %d committed "
                               "chunk(s)", self.folder, os.path.basename(path), len(records))
        chunks, self._widths, next_row = [], set(), 0
        for record in records:
            emb_path = chunk_paths(self.folder, record.number)[0]
            if not os.path.exists(emb_path):
                raise StoreError("{}: chunk {} is committed but {} is missing; the folder was "
                                 "edited by hand or copied in part".format(
                                     self.folder, record.number, os.path.basename(emb_path)))
            shape, dtype, offset = _npy_layout(emb_path)
            if record.first_row != next_row or shape[0] != record.rows:
                raise StoreError("{}: chunk {} has {} good rows from row {}, but {} holds {} "
                                 "rows; the chunk is inconsistent".format(
                                     self.folder, record.number, record.rows, record.first_row,
                                     emb_path, shape[0]))
            if shape[0]:
                self._widths.add(shape[1])
            chunks.append(ChunkFile(record.number, emb_path, record.first_row, record.rows,
                                    record.files, record.committed_at, offset, dtype))
            next_row += record.rows
        if len(self._widths) > 1:
            raise StoreError("{}: chunks of different widths {}".format(self.folder,
                                                                         sorted(self._widths)))
        return chunks

    def fingerprint(self) -> str:
        """A hash of the committed chunks (number, first row, rows, files, commit time, file).

        Two stores of one model and length differ here unless one is a copy of the other (the
        commit times are the index's, kept by a copy; formats 1-2 take them from the CSVs'
        modification times, which a copy may change). An index records it
        (:mod:`cvnet.jetson.ann_index`).

        Returns:
            64 hex digits (SHA-256).
        """
        digest = hashlib.sha256()
        for chunk in self.chunks:
            digest.update("{}|{}|{}|{}|{!r}|{}\n".format(
                chunk.number, chunk.first_row, chunk.rows, chunk.files, float(chunk.committed_at),
                os.path.basename(chunk.emb_path)).encode("utf-8"))
        return digest.hexdigest()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the index."""
        if self.index is not None:
            self.index.close()
            self.index = None

    # ------------------------------------------------------------------------ embeddings

    def chunk_of(self, row: int) -> ChunkFile:
        """The chunk that holds embedding row ``row``."""
        return self.chunks[bisect.bisect_right(self._firsts, row) - 1]

    def blocks(self, rows_per_block: int, start: int = 0, stop: Optional[int] = None
               ) -> Iterator[Tuple[int, np.ndarray]]:
        """The embeddings ``start..stop`` in blocks, as float32.

        Each block is read from the files into one buffer that the next block overwrites
        (copy what you keep); a block spans chunks, so its size is the caller's choice, not the
        chunk's. Memory: ``rows_per_block x D`` float32 (and as many float16 for a float16
        store).

        Args:
            rows_per_block: Rows per block, >= 1.
            start: First row.
            stop: Row after the last (default: the end).

        Yields:
            ``(first_row, block)``: block is (n, D) float32, ``n <= rows_per_block``.
        """
        stop = self.size if stop is None else min(stop, self.size)
        if start >= stop:
            return
        buffer = np.empty((max(1, min(rows_per_block, stop - start)), self.dim), np.float32)
        scratch = None
        filled, block_start = 0, start
        for chunk in self.chunks[bisect.bisect_right(self._firsts, start) - 1:]:
            if chunk.first_row >= stop:
                break
            begin = max(start, chunk.first_row) - chunk.first_row
            end = min(stop, chunk.first_row + chunk.rows) - chunk.first_row
            if end <= begin:
                continue
            with open(chunk.emb_path, "rb", buffering=0) as handle:
                handle.seek(chunk.offset + begin * self.dim * np.dtype(chunk.dtype).itemsize)
                position = begin
                while position < end:
                    count = min(end - position, len(buffer) - filled)
                    target = buffer[filled:filled + count]
                    if chunk.dtype == "float32":
                        _read_into(handle, target, chunk.emb_path)
                    else:
                        if scratch is None:
                            scratch = np.empty(buffer.shape, np.float16)
                        _read_into(handle, scratch[:count], chunk.emb_path)
                        target[...] = scratch[:count]
                    filled += count
                    position += count
                    if filled == len(buffer):
                        yield block_start, buffer
                        block_start += filled
                        filled = 0
        if filled:
            yield block_start, buffer[:filled]

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """Chosen embedding rows, as (len(rows), D) float32 (read one by one, in file order).

        Raises:
            StoreError: A row outside the store.
        """
        rows = np.asarray(rows, np.int64).reshape(-1)
        out = np.empty((len(rows), self.dim), np.float32)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.size):
            raise StoreError("{}: rows {}..{} asked, the store has {}".format(
                self.folder, rows.min(), rows.max(), self.size))
        handles = {}
        try:
            for i in np.argsort(rows, kind="stable"):
                chunk = self.chunk_of(int(rows[i]))
                itemsize = np.dtype(chunk.dtype).itemsize
                if chunk.number not in handles:
                    handles[chunk.number] = os.open(chunk.emb_path, os.O_RDONLY)
                length = self.dim * itemsize
                data = os.pread(handles[chunk.number], length,
                                chunk.offset + (int(rows[i]) - chunk.first_row) * length)
                if len(data) != length:
                    raise StoreError("{}: truncated".format(chunk.emb_path))
                out[i] = np.frombuffer(data, chunk.dtype)
        finally:
            for handle in handles.values():
                os.close(handle)
        return out

    # ------------------------------------------------------------------------ index rows

    def lookup(self, rows: Iterable[int]) -> Dict[int, IndexRow]:
        """The index rows of chosen embedding rows (only those are read)."""
        wanted = [int(row) for row in rows if 0 <= row < self.size]
        return self.index.lookup(wanted) if self.index is not None and wanted else {}

    def iter_rows(self) -> Iterator[IndexRow]:
        """Every index row of the committed chunks, good and failed, in processing order
        (streamed: a million rows are never held at once)."""
        if self.index is not None:
            for row in self.index.iter_rows(len(self.chunks)):
                yield row


def _read_into(handle: Any, target: np.ndarray, path: str) -> None:
    """Fills ``target`` (C-contiguous) from the file's current position."""
    view = target.reshape(-1).view(np.uint8)
    done = 0
    while done < len(view):
        got = handle.readinto(memoryview(view)[done:])
        if not got:
            raise StoreError("{}: file ends early (truncated); delete the chunk and resume".format(
                path))
        done += got


class StoreWriter:
    """Appends committed chunks to a store of format 3: ``cvnet-embed``'s writer.

    Opening repairs what a killed run left (an uncommitted ``.npy`` is deleted; a missing
    ``index.sqlite`` of a store created just before a kill, with no ``emb-*.npy`` yet, is
    created; beside chunks, a missing index is an error: see :class:`Store`).

    Args:
        folder: A folder with a format 3 ``meta.json`` (:meth:`create` makes one).

    Attributes:
        next_number: The next chunk's number.
        next_row: The next embedding row.

    Raises:
        StoreError: Not a store, a store of an older format (migrate it first), or an
            inconsistent one.
    """

    def __init__(self, folder: str):
        meta = read_meta(folder)
        version = int(meta.get("format_version", 1))
        if version != FORMAT_VERSION:
            raise StoreError("{}: store format {}; this cvnet appends to format {} only: run "
                             "python3 -m cvnet.jetson migrate-store {} first (the embeddings "
                             "stay; the index moves into {})".format(
                                 folder, version, FORMAT_VERSION, folder, INDEX_FILE))
        if not os.path.exists(os.path.join(folder, INDEX_FILE)):
            _require_index(folder)  # never an empty index beside committed chunks
            create_index(folder)
        with Store(folder, repair=True) as store:
            self.next_number = len(store.chunks)
            self.next_row = store.size
        self.folder, self.meta = folder, meta
        self.index = SqliteIndex(folder, writable=True)

    @classmethod
    def create(cls, folder: str, meta: Dict[str, Any]) -> "StoreWriter":
        """Starts a new store in an empty folder (created): ``meta.json``, then the index."""
        make_folders(folder)
        write_meta(folder, dict(meta, format=FORMAT, format_version=FORMAT_VERSION))
        create_index(folder)
        return cls(folder)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the index."""
        self.index.close()

    def committed_among(self, names: Sequence[str]) -> np.ndarray:
        """Which of ``names`` are committed already (a resumed run skips them).

        Names compare as bytes: another cvnet may have escaped the same name differently
        (:mod:`cvnet.core.filenames`). Each name's escaped form is looked up in the index's
        unique path index, 500 at a time; the index is streamed once for the few names it
        holds in another escaping (their bytes are the only ones kept). Memory: one flag per
        listed name and one page of rows, not a set of every committed name (that was ~120
        bytes a row: 115 MiB for a million).

        Args:
            names: File names as the operating system or a list file gives them (``str``).

        Returns:
            (len(names),) bool.
        """
        escaped_otherwise = set()
        for path in self.index.iter_paths():
            if not _PLAIN_NAME.match(path) and encode_name(decode_name(path)) != path:
                escaped_otherwise.add(decode_name(path))
        done = np.zeros(len(names), bool)
        for start in range(0, len(names), LOOKUP_BATCH):
            texts = [encode_name(name) for name in names[start:start + LOOKUP_BATCH]]
            found = self.index.has_paths(texts)
            for i, text in enumerate(texts):
                done[start + i] = text in found or (
                    bool(escaped_otherwise) and decode_name(text) in escaped_otherwise)
        return done

    def commit(self, embeddings: np.ndarray, rows: Sequence[IndexRow]) -> ChunkRecord:
        """Commits one chunk: the ``.npy`` (fsynced, renamed, folder fsynced), then its rows.

        Args:
            embeddings: (n, D) float32 or float16, the chunk's good files in order.
            rows: Every file of the chunk, good and failed, in processing order; the good ones
                numbered ``next_row, next_row + 1, ...``.

        Raises:
            StoreError: The rows and embeddings disagree, the embeddings are not (n, D) with
                the store's D, hold NaN or infinity, or a path is already committed. Nothing
                of the chunk is written then.
        """
        dim = self.meta.get("embedding_dim")
        shape = getattr(embeddings, "shape", ())
        if len(shape) != 2 or (dim and shape[1] != dim):
            raise StoreError("{}: chunk {}: embeddings of shape {}; the store holds (n, {}) "
                             "rows".format(self.folder, self.next_number, shape, dim or "D"))
        good_rows = [row for row in rows if row.status == "ok"]
        good = [row.row for row in good_rows]
        if good != list(range(self.next_row, self.next_row + len(good))) or \
                len(embeddings) != len(good):
            raise StoreError("{}: chunk {}: {} good rows numbered {}..., {} embeddings; expected "
                             "them numbered from {}".format(self.folder, self.next_number,
                                                            len(good), good[:1], len(embeddings),
                                                            self.next_row))
        dtype = self.meta.get("dtype", "float32")
        if dtype not in DTYPES:
            raise StoreError("{}: meta.json says dtype {!r}; a store holds {}".format(
                self.folder, dtype, " or ".join(DTYPES)))
        if np.dtype(embeddings.dtype).name != dtype:
            raise StoreError("{}: chunk {} is {}, the store holds {}".format(
                self.folder, self.next_number, embeddings.dtype, dtype))
        check_finite(embeddings, good_rows, "{}: chunk {}".format(self.folder, self.next_number))
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(embeddings))
        write_bytes_atomic(chunk_paths(self.folder, self.next_number)[0], buffer.getvalue())
        record = self.index.commit(self.next_number, self.next_row, rows)
        self.next_number += 1
        self.next_row += len(good)
        return record


def check_finite(embeddings: np.ndarray, good: Sequence[IndexRow], where: str) -> None:
    """Raises StoreError naming the first file whose embedding holds NaN or infinity.

    A run stops at its first NaN rather than storing it: a NaN row scores NaN against every
    query and an infinite one overflows, so neither can be ranked.

    Args:
        embeddings: (n, D) float32 or float16.
        good: The n index rows of those embeddings, in order.
        where: What to name in the message (the folder and chunk).
    """
    finite = np.isfinite(embeddings).all(axis=1)
    if finite.all():
        return
    first = int(np.argmin(finite))
    name = native_name(good[first].path) if first < len(good) else "row {}".format(first)
    raise StoreError(
        "{}: {!r} and {} other file(s) have embeddings that are not finite (NaN or infinity); "
        "nothing of the chunk was written. Either the model or engine produced NaN/infinity for "
        "that image (check the engine, e.g. an FP16 build of it, against the ONNX model), or "
        "--fp16-out overflowed float16 with --no-normalize (drop either option)".format(
            where, name, int((~finite).sum()) - 1))


def write_chunk(folder: str, number: int, embeddings: np.ndarray,
                rows: Sequence[IndexRow]) -> None:
    """Commits chunk ``number`` to a format 3 store (opens, commits, closes; see
    :class:`StoreWriter` for many chunks).

    Raises:
        StoreError: ``number`` is not the store's next chunk, or see :meth:`StoreWriter.commit`.
    """
    with StoreWriter(folder) as writer:
        if number != writer.next_number:
            raise StoreError("{}: chunk {} cannot be committed, the next is {}".format(
                folder, number, writer.next_number))
        writer.commit(embeddings, rows)


def load_embeddings(folder: str) -> Tuple[np.ndarray, List[IndexRow], Dict[str, Any]]:
    """Reads a whole embedding folder (for folders that fit in memory; match reads lazily).

    Returns:
        ``(embeddings, rows, meta)``: (N, D) array in the stored dtype (float32 or float16),
        where row ``i`` belongs to the index row whose ``row == i``; every index row (good and
        failed) in processing order; and ``meta.json``.

    Raises:
        StoreError: The folder is not a consistent cvnet embedding folder.
    """
    with Store(folder) as store:
        arrays = [np.load(chunk.emb_path) for chunk in store.chunks]
        dtype = np.dtype(store.meta.get("dtype", "float32"))
        embeddings = np.concatenate(arrays) if arrays else np.zeros((0, store.dim), dtype)
        return embeddings, list(store.iter_rows()), store.meta


def migrate_store(folder: str) -> Dict[str, Any]:
    """Turns a store of format 1 or 2 into format 3 in place (the embeddings stay).

    Uncommitted ``.npy`` files (a killed run's) are deleted; ``--resume`` with this cvnet redoes
    them. See :func:`cvnet.jetson.store_legacy.sqlite_from_csv` for why an interruption is safe.

    Returns:
        ``{"folder", "from_version", "chunks", "rows", "files"}``; ``from_version`` 3 when the
        folder was already migrated (nothing is done but removing left-over CSVs).

    Raises:
        StoreError: Not a store, or an inconsistent one (nothing is changed).
    """
    meta = read_meta(folder)
    version = int(meta.get("format_version", 1))
    if version >= FORMAT_VERSION:
        left = [chunk_paths(folder, number)[1] for number in chunk_numbers(folder)[1]]
        if left:
            remove_csv_index(folder, left)
        with Store(folder) as store:
            return {"folder": folder, "from_version": version, "chunks": len(store.chunks),
                    "rows": store.size, "files": sum(c.files for c in store.chunks)}
    index = CsvIndex(folder, version)
    chunks = index.chunks()
    for number in chunk_numbers(folder)[0]:
        if number >= len(chunks):
            os.remove(chunk_paths(folder, number)[0])
            logger.info("%s: removed uncommitted chunk %d (a killed run's)", folder, number)
    csvs = sqlite_from_csv(folder, chunks, index)
    write_meta(folder, dict(meta, format_version=FORMAT_VERSION))
    remove_csv_index(folder, csvs)
    return {"folder": folder, "from_version": version, "chunks": len(chunks),
            "rows": sum(chunk.rows for chunk in chunks),
            "files": sum(chunk.files for chunk in chunks)}
