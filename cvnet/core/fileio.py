"""Atomic, durable file output, the one place every writer uses (torch-free, Python 3.6).

A file is written to a temporary name in its destination folder and renamed over the target with
``os.replace`` only when it is complete, so a crash, a full disk or an exception half-way never
leaves a truncated ONNX file, engine, checkpoint or sidecar behind, and an existing file is only
ever replaced by a complete one.

Durable on power loss, too: the temporary file is fsynced before the rename (its data is on the
disk before it gets the name) and the folder is fsynced after it (the rename itself is on the
disk). Without the second fsync a chunk, index or checkpoint reported as written can vanish,
or come back empty, when a drone or roadside box loses power right after. File systems that
cannot fsync a folder (some network and FUSE file systems answer EINVAL) are let through.

Example:
    >>> write_text_atomic("cvnet.onnx.json", '{"format_version": 1}')
    >>> with atomic_path("model.pt") as tmp:   # for writers that want a path
    ...     torch.save(state, tmp)
"""

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from typing import Dict, Iterator, List, Union

from cvnet.core.errors import OutputPathError

PathLike = Union[str, "os.PathLike[str]"]

logger = logging.getLogger(__name__)

#: errno values of an fsync the file system does not support (as opposed to an I/O error).
_FSYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF)


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: PathLike) -> str:
    """Checks, before any work is done, that ``path`` can be created or replaced.

    Args:
        path: The output file.

    Returns:
        The absolute path.

    Raises:
        OutputPathError: The folder does not exist or is not writable, or ``path`` is a folder.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise OutputPathError("cannot write {}: it is a folder; give a file name such as "
                              "{}".format(path, os.path.join(path, "cvnet.onnx")))
    if not os.path.isdir(folder):
        raise OutputPathError("cannot write {}: folder {} does not exist; create it first or "
                              "choose another output path".format(path, folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError("cannot write {}: no write permission in folder {}; choose a folder "
                              "you can write to".format(path, folder))
    return path


def fsync_path(path: str, folder: bool = False) -> None:
    """Flushes a file's data, or a folder's entries, to the disk (``fsync``).

    Args:
        path: The file or folder.
        folder: ``path`` is a folder: fsync it so that a rename or creation in it survives a
            power loss. Skipped where the file system cannot (see the module docstring).

    Raises:
        OSError: The fsync failed (an I/O error: the data may not be on the disk).
    """
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0)
    handle = os.open(path, flags)
    try:
        os.fsync(handle)
    except OSError as err:
        if not folder or err.errno not in _FSYNC_UNSUPPORTED:
            raise
        logger.debug("cannot fsync folder %s (%s): its file system does not support it",
                     path, err.strerror)
    finally:
        os.close(handle)


def make_folders(path: PathLike) -> str:
    """Creates a folder and its missing parents durably (``os.makedirs`` + fsync of each parent).

    A folder that holds committed files must itself survive a power loss: its entry lives in
    its parent folder, which is fsynced after each level is created. An existing folder is
    left as it is.

    Returns:
        The absolute path.

    Raises:
        OutputPathError: A level cannot be created (no permission, a file in the way...).
    """
    path = os.path.abspath(os.fspath(path))
    missing, level = [], path
    while not os.path.isdir(level) and os.path.dirname(level) != level:
        missing.append(level)
        level = os.path.dirname(level)
    for level in reversed(missing):
        try:
            os.mkdir(level)
        except OSError as err:
            if not (err.errno == errno.EEXIST and os.path.isdir(level)):  # not a race we lost
                raise OutputPathError("cannot create folder {}: {}".format(
                    level, err.strerror or err))
        fsync_path(os.path.dirname(level), folder=True)
    return path


def _temporary(path: str) -> str:
    """Creates an empty temporary file next to ``path`` (``.NAME.XXXXXXXX.tmp``)."""
    folder, name = os.path.split(path)
    try:
        handle, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=folder)
    except OSError as err:
        raise OutputPathError("cannot write {}: {}".format(path, err.strerror or err))
    os.close(handle)
    return tmp


def _seal(tmp: str) -> None:
    """Gives a complete temporary file a new file's permissions and puts its data on the disk.

    The permissions are those a newly created file would get (``0o666`` minus the umask), not
    ``mkstemp``'s ``0o600``.
    """
    os.chmod(tmp, 0o666 & ~_umask())
    fsync_path(tmp)


def _remove(paths: List[str]) -> None:
    for tmp in paths:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yields a temporary path next to ``path``; renames it to ``path`` if the block succeeds.

    When the block succeeds the temporary file is fsynced, renamed to ``path``, and the folder
    fsynced: once this returns, ``path`` survives a power loss. The temporary file is removed
    if the block raises. The result gets the permissions a newly created file would get
    (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

    Args:
        path: The final file.

    Raises:
        OutputPathError: The temporary file cannot be created or renamed (missing folder, no
            permission, disk full...); one the block raised itself (another file it writes)
            passes unchanged, naming its own file.
    """
    path = check_writable(path)
    tmp = _temporary(path)
    try:
        yield tmp
        _seal(tmp)
        os.replace(tmp, path)
        fsync_path(os.path.dirname(path), folder=True)
    except OutputPathError:
        raise  # names its own file: wrapping it would blame this one
    except OSError as err:
        raise OutputPathError("cannot write {}: {}".format(path, err.strerror or err))
    finally:
        _remove([tmp])


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def write_bytes_atomic(path: PathLike, data: bytes) -> str:
    """Writes ``data`` to ``path`` atomically and durably (see :func:`atomic_path`).

    Returns:
        The absolute path written.

    Raises:
        OutputPathError: See :func:`atomic_path`.
    """
    return write_files_atomic({path: data})[0]


def write_files_atomic(files: Dict[PathLike, bytes]) -> List[str]:
    """Writes several files that belong together (an artefact and its sidecar), in order.

    1. Every file is written to its temporary file and fsynced. An error here (disk full, an
       I/O error, bad data) replaces nothing and removes every temporary file.
    2. The temporary files are renamed over their targets **in the order given**: give the
       artefact first and its sidecar last, so that the sidecar is the commit marker (a new
       sidecar is only ever next to the artefact it describes).
    3. Each folder is fsynced once, so that the renames survive a power loss once this returns.

    What a crash between two renames of step 2 leaves: the files renamed so far are new, the
    others old (or absent), and their temporary files (``.NAME.XXXXXXXX.tmp`` beside them, safe
    to delete) remain. With the sidecar last that is a new artefact beside its old sidecar, or
    none, which the artefact's readers refuse (the sidecar's SHA-256 no longer matches); writing
    again repairs it. A rename that fails (this returns) raises and removes the temporary files
    not yet renamed, leaving the same state. After a power loss before step 3 which renames
    survive is up to the file system; journaling ones (ext4, XFS) keep them in order, which
    POSIX does not promise.

    Args:
        files: Path -> content, in the order to commit them.

    Returns:
        The absolute paths written, in the order given.

    Raises:
        OutputPathError: A file cannot be created, written, fsynced or renamed (the message
            names it); see :func:`atomic_path`.
    """
    paths = [check_writable(path) for path in files]
    temporaries = []  # type: List[str]
    try:
        for path, data in zip(paths, files.values()):
            temporaries.append(_temporary(path))
            try:
                _write(temporaries[-1], data)
                _seal(temporaries[-1])
            except OutputPathError:
                raise
            except OSError as err:
                raise OutputPathError("cannot write {}: {}".format(path, err.strerror or err))
        for done, (path, tmp) in enumerate(zip(paths, temporaries)):
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise OutputPathError("cannot write {}: {}{}".format(
                    path, err.strerror or err, "" if not done else " (already replaced: {})"
                    .format(", ".join(paths[:done]))))
        for folder in sorted(set(os.path.dirname(path) for path in paths)):
            try:
                fsync_path(folder, folder=True)
            except OSError as err:
                raise OutputPathError("cannot write {}: {} (fsync of its folder {})".format(
                    ", ".join(path for path in paths if os.path.dirname(path) == folder),
                    err.strerror or err, folder))
    finally:
        _remove(temporaries)
    return paths


def write_text_atomic(path: PathLike, text: str, encoding: str = "utf-8") -> str:
    """Writes ``text`` atomically, newlines as given; see :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode(encoding))


def sha256_bytes(data: bytes) -> str:
    """Returns the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Returns the hex SHA-256 of a file, read in chunks of ``chunk_size`` bytes."""
    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
