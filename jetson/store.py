"""The embedding store: chunked, resumable output of ``cvnet-embed`` (Python 3.6, no torch).

An output folder holds::

    meta.json            format, the engine's model hash / dim / normalisation, dtype
    emb-00000.npy        (N_0, D) float32 or float16: embeddings of chunk 0's good images
    index-00000.csv      one row per file of chunk 0: path,status,row,kind,message
    emb-00001.npy ...

File names are bytes: ``path`` in the index and ``root``/``source`` in ``meta.json`` are
escaped text (:func:`cvnet.core.filenames.encode_name`: UTF-8 as it reads, any other byte and ``%``
as ``%XX``), so any name the file system allows is stored exactly and reads back as the same
bytes under any locale; :func:`file_path` turns a row back into a path to open. Format version
1 (before this escaping) is still read.

Every file is written atomically and durably (:mod:`cvnet.core.fileio`: temporary file, fsync,
``os.replace``, fsync of the folder). A chunk is written ``.npy``
first, then its index; **the index is the commit marker**: a chunk counts only when its index
exists and names as many good rows as its ``.npy`` holds. A run killed between the two leaves
an ``.npy`` without an index, which :func:`open_store` deletes so the chunk is redone. Rows are
numbered globally (``row`` column; -1 for failed files), so ``np.concatenate`` of the chunks in
order is the embedding matrix and ``index`` row ``row`` names its file.

Example:
    >>> embeddings, rows, meta = load_embeddings("out")   # (N, D), [IndexRow], dict
    >>> rows[0].path, rows[0].status                       # ('a/1.jpg', 'ok')
"""

import csv
import io
import json
import os
import re
from typing import Any, Dict, Iterator, List, NamedTuple, Sequence, Tuple

import numpy as np

from cvnet.core.errors import CVNetError
from cvnet.core.fileio import write_bytes_atomic, write_text_atomic
from cvnet.core.filenames import encode_name, name_from_utf8, native_name

#: ``meta.json``'s format name and version.
FORMAT = "cvnet-embeddings"
FORMAT_VERSION = 2
#: Versions this code reads: 1 wrote names as plain text, 2 escapes them.
READ_VERSIONS = (1, 2)
META_FILE = "meta.json"
INDEX_COLUMNS = ("path", "status", "row", "kind", "message")
_CHUNK = re.compile(r"^(emb|index)-(\d{5,})\.(npy|csv)$")


class StoreError(CVNetError):
    """An embedding folder is missing, inconsistent, or belongs to another model."""


class IndexRow(NamedTuple):
    """One input file's outcome.

    Attributes:
        path: The file as listed (relative to ``meta["root"]`` for a walked folder), as escaped
            text (:func:`cvnet.core.filenames.encode_name`); :func:`file_path` gives the path to
            open.
        status: ``"ok"`` (it has an embedding) or ``"failed"`` (reported and skipped).
        row: Its row in the concatenated embeddings; -1 when failed.
        kind: ``;``-separated kinds: the failure (``empty``, ``truncated``, ``not_image``, ...)
            or what was done to a good file (``grayscale``, ``rgba``, ``16bit``, ``tiny``,
            ``huge``, ``suffix``); empty for a plain good file.
        message: The reason, in words.
    """

    path: str
    status: str
    row: int
    kind: str
    message: str


def chunk_paths(folder: str, number: int) -> Tuple[str, str]:
    """The ``(emb-NNNNN.npy, index-NNNNN.csv)`` paths of chunk ``number``."""
    return (os.path.join(folder, "emb-{:05d}.npy".format(number)),
            os.path.join(folder, "index-{:05d}.csv".format(number)))


def _chunk_numbers(folder: str) -> Tuple[List[int], List[int]]:
    embs, indexes = [], []
    for name in os.listdir(folder):
        match = _CHUNK.match(name)
        if match and (match.group(1), match.group(3)) in (("emb", "npy"), ("index", "csv")):
            (embs if match.group(1) == "emb" else indexes).append(int(match.group(2)))
    return sorted(embs), sorted(indexes)


def read_meta(folder: str) -> Dict[str, Any]:
    """``meta.json`` of an embedding folder.

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


def file_path(root: str, name: str) -> str:
    """The path to open for an index row: ``file_path(meta["root"], row.path)``.

    Args:
        root: ``meta["root"]`` (escaped text).
        name: ``IndexRow.path`` (escaped text), relative to ``root`` or absolute.
    """
    return os.path.join(native_name(root), native_name(name))


def write_meta(folder: str, meta: Dict[str, Any]) -> None:
    """Writes ``meta.json`` atomically."""
    write_text_atomic(os.path.join(folder, META_FILE),
                      json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _read_index(path: str, version: int) -> List[IndexRow]:
    with open(path, "r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if tuple(header or ()) != INDEX_COLUMNS:
            raise StoreError("{}: header {}, expected {}".format(path, header,
                                                                 ",".join(INDEX_COLUMNS)))
        rows = []
        for line in reader:
            if len(line) != len(INDEX_COLUMNS):
                raise StoreError("{}: line {} has {} fields, expected {}".format(
                    path, reader.line_num, len(line), len(INDEX_COLUMNS)))
            name = line[0] if version >= 2 else encode_name(name_from_utf8(line[0]))
            rows.append(IndexRow(name, line[1], int(line[2]), line[3], line[4]))
    return rows


def _index_text(rows: Sequence[IndexRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


class Chunk(NamedTuple):
    """A committed chunk: its number, files and index rows."""

    number: int
    emb_path: str
    index_path: str
    rows: List[IndexRow]


def scan_chunks(folder: str, repair: bool = False) -> List[Chunk]:
    """The committed chunks of a folder, in order, checked for consistency.

    Args:
        folder: The embedding folder.
        repair: Delete an ``.npy`` left without its index by a killed run (it is redone).

    Raises:
        StoreError: An index without its ``.npy``, numbering gaps, row counts that disagree, or
            (without ``repair``) an uncommitted ``.npy``.
    """
    version = read_meta(folder).get("format_version", 1)
    embs, indexes = _chunk_numbers(folder)
    orphans = sorted(set(embs) - set(indexes))
    if orphans:
        if not repair:
            raise StoreError("{}: chunk(s) {} have embeddings but no index (a killed run); run "
                             "cvnet-embed --resume to redo them".format(folder, orphans))
        for number in orphans:
            os.remove(chunk_paths(folder, number)[0])
    missing = sorted(set(indexes) - set(embs))
    if missing:
        raise StoreError("{}: chunk(s) {} have an index but no embeddings file; the folder was "
                         "edited by hand: delete those index files and resume".format(
                             folder, missing))
    if indexes != list(range(len(indexes))):
        raise StoreError("{}: chunk numbers {} have gaps; expected 0..{}".format(
            folder, indexes, len(indexes) - 1))
    chunks, next_row = [], 0
    for number in indexes:
        emb_path, index_path = chunk_paths(folder, number)
        rows = _read_index(index_path, version)
        good = [row.row for row in rows if row.status == "ok"]
        shape = np.load(emb_path, mmap_mode="r").shape
        if good != list(range(next_row, next_row + len(good))) or shape[0] != len(good):
            raise StoreError("{}: {} good rows numbered {}..., but {} holds {} rows; the chunk is "
                             "inconsistent: delete both files of chunk {} and resume".format(
                                 index_path, len(good), good[:1], emb_path, shape[0], number))
        next_row += len(good)
        chunks.append(Chunk(number, emb_path, index_path, rows))
    return chunks


def write_chunk(folder: str, number: int, embeddings: np.ndarray,
                rows: Sequence[IndexRow]) -> None:
    """Commits one chunk: the ``.npy`` first, then the index (the commit marker)."""
    emb_path, index_path = chunk_paths(folder, number)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(embeddings))
    write_bytes_atomic(emb_path, buffer.getvalue())
    write_text_atomic(index_path, _index_text(rows))


def iter_embedding_chunks(folder: str) -> Iterator[Tuple[int, np.ndarray, List[IndexRow]]]:
    """Yields ``(first_row, embeddings (n, D) memory-mapped, good index rows)`` per chunk.

    Memory stays bounded by one chunk, whatever the folder's size.
    """
    for chunk in scan_chunks(folder):
        good = [row for row in chunk.rows if row.status == "ok"]
        if good:
            yield good[0].row, np.load(chunk.emb_path, mmap_mode="r"), good


def load_embeddings(folder: str) -> Tuple[np.ndarray, List[IndexRow], Dict[str, Any]]:
    """Reads a whole embedding folder.

    Returns:
        ``(embeddings, rows, meta)``: (N, D) array in the stored dtype (float32 or float16),
        where row ``i`` belongs to the index row whose ``row == i``; every index row (good and
        failed) in processing order; and ``meta.json``.

    Raises:
        StoreError: The folder is not a complete, consistent cvnet embedding folder.
    """
    meta = read_meta(folder)
    chunks = scan_chunks(folder)
    rows = [row for chunk in chunks for row in chunk.rows]
    arrays = [np.load(chunk.emb_path) for chunk in chunks]
    dim = int(meta.get("embedding_dim") or 0)
    dtype = np.dtype(meta.get("dtype", "float32"))
    embeddings = np.concatenate(arrays) if arrays else np.zeros((0, dim), dtype)
    return embeddings, rows, meta
