"""Atomic file output (torch-free, Python 3.6): a reader never sees a half-written file.

Each writer writes to a temporary file in the destination's folder and then renames it over the
destination with :func:`os.replace`, which is atomic on POSIX and Windows within one file system.
"""

import os
import tempfile
from typing import Union


def write_bytes_atomic(path: str, data: Union[bytes, bytearray, memoryview]) -> None:
    """Writes data to path atomically (temporary file in the same folder, then os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temp_path = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def write_text_atomic(path: str, text: str, encoding: str = "utf-8") -> None:
    """Writes text to path atomically; newlines are written as given (no translation)."""
    write_bytes_atomic(path, text.encode(encoding))


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
