"""Atomic writes leave either the old file or the new one, never a temporary file."""

import os
import stat

import pytest

from cvnet.fileio import write_bytes_atomic, write_text_atomic

pytestmark = pytest.mark.device


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    path = str(tmp_path / "out.csv")
    write_text_atomic(path, "old\n")
    write_bytes_atomic(path, b"new\n")
    assert open(path, "rb").read() == b"new\n"
    assert os.listdir(str(tmp_path)) == ["out.csv"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "out.txt")
    write_text_atomic(path, "old")
    with pytest.raises(TypeError):
        write_bytes_atomic(path, "text is not bytes")
    assert open(path).read() == "old"
    assert os.listdir(str(tmp_path)) == ["out.txt"]
