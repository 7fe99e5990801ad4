"""Atomic file output, the one place every writer uses (torch-free, Python 3.6).

A file is written to a temporary name in its destination folder and renamed over the target with
``os.replace`` only when it is complete, so a crash, a full disk or an exception half-way never
leaves a truncated ONNX file, engine, checkpoint or sidecar behind, and an existing file is only
ever replaced by a complete one.

Example:
    >>> write_text_atomic("cvnet.onnx.json", '{"format_version": 1}')
    >>> with atomic_path("model.pt") as tmp:   # for writers that want a path
    ...     torch.save(state, tmp)
"""

import contextlib
import hashlib
import os
import tempfile
from typing import Dict, Iterator, List, Union

from cvnet.errors import OutputPathError

PathLike = Union[str, "os.PathLike[str]"]


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


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yields a temporary path next to ``path``; renames it to ``path`` if the block succeeds.

    The temporary file is removed if the block raises. The result gets the permissions a newly
    created file would get (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

    Args:
        path: The final file.

    Raises:
        OutputPathError: The temporary file cannot be created or renamed (missing folder, no
            permission, disk full...).
    """
    path = check_writable(path)
    folder, name = os.path.split(path)
    try:
        handle, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=folder)
    except OSError as err:
        raise OutputPathError("cannot write {}: {}".format(path, err.strerror or err))
    os.close(handle)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        raise OutputPathError("cannot write {}: {}".format(path, err.strerror or err))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes_atomic(path: PathLike, data: bytes) -> str:
    """Writes ``data`` to ``path`` atomically (flushed and fsynced before the rename).

    Returns:
        The absolute path written.

    Raises:
        OutputPathError: See :func:`atomic_path`.
    """
    return write_files_atomic({path: data})[0]


def write_files_atomic(files: Dict[PathLike, bytes]) -> List[str]:
    """Writes several files that belong together (an artefact and its sidecar).

    Every file is complete in its temporary file before the first rename, so an error while
    writing leaves none of them behind and none of the old ones replaced.

    Args:
        files: Path -> content.

    Returns:
        The absolute paths written, in the order given.

    Raises:
        OutputPathError: See :func:`atomic_path`.
    """
    with contextlib.ExitStack() as stack:
        for path, data in files.items():
            _write_synced(stack.enter_context(atomic_path(path)), data)
    return [os.path.abspath(os.fspath(path)) for path in files]


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
