"""Atomic writes leave either the old file or the new one, never a temporary file."""

import os
import stat

import pytest

from cvnet.errors import OutputPathError
from cvnet.fileio import (atomic_path, check_writable, sha256_bytes, sha256_file,
                          write_bytes_atomic, write_files_atomic, write_text_atomic)

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


def test_failure_inside_the_block_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "model.pt"
    write_text_atomic(str(target), "old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(str(tmp_path)) == ["model.pt"]


def test_several_files_are_written_together(tmp_path):
    paths = [str(tmp_path / "a.onnx"), str(tmp_path / "a.onnx.json")]
    assert write_files_atomic({paths[0]: b"graph", paths[1]: b"{}"}) == paths
    assert sorted(os.listdir(str(tmp_path))) == ["a.onnx", "a.onnx.json"]


def test_missing_folder_is_reported_before_writing(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        check_writable(str(tmp_path / "no" / "such" / "cvnet.onnx"))
    with pytest.raises(OutputPathError, match="does not exist"):
        write_bytes_atomic(str(tmp_path / "missing" / "x.bin"), b"")


def test_a_folder_is_not_an_output_file(tmp_path):
    with pytest.raises(OutputPathError, match="is a folder"):
        write_bytes_atomic(str(tmp_path), b"")


def test_sha256_of_bytes_and_file_agree(tmp_path):
    target = str(tmp_path / "f")
    write_bytes_atomic(target, b"cvnet" * 1000)
    assert sha256_file(target, chunk_size=7) == sha256_bytes(b"cvnet" * 1000)
    assert sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
