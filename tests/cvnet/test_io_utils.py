"""Atomic writes: complete files or nothing, and clear errors for unwritable paths."""

import os
import stat

import pytest

from cvnet.errors import OutputPathError
from cvnet.io_utils import (atomic_path, atomic_write_bytes, atomic_write_files,
                            atomic_write_text, check_writable, sha256_bytes, sha256_file)

pytestmark = pytest.mark.device


def test_writes_the_content_with_normal_permissions(tmp_path):
    target = str(tmp_path / "out.bin")
    assert atomic_write_bytes(target, b"abc") == target
    with open(target, "rb") as handle:
        assert handle.read() == b"abc"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~mask
    assert os.listdir(str(tmp_path)) == ["out.bin"]


def test_failure_inside_the_block_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "model.pt"
    atomic_write_text(str(target), "old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(str(tmp_path)) == ["model.pt"]


def test_several_files_are_written_together(tmp_path):
    paths = [str(tmp_path / "a.onnx"), str(tmp_path / "a.onnx.json")]
    assert atomic_write_files({paths[0]: b"graph", paths[1]: b"{}"}) == paths
    assert sorted(os.listdir(str(tmp_path))) == ["a.onnx", "a.onnx.json"]


def test_missing_folder_is_reported_before_writing(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        check_writable(str(tmp_path / "no" / "such" / "cvnet.onnx"))
    with pytest.raises(OutputPathError, match="does not exist"):
        atomic_write_bytes(str(tmp_path / "missing" / "x.bin"), b"")


def test_a_folder_is_not_an_output_file(tmp_path):
    with pytest.raises(OutputPathError, match="is a folder"):
        atomic_write_bytes(str(tmp_path), b"")


def test_sha256_of_bytes_and_file_agree(tmp_path):
    target = str(tmp_path / "f")
    atomic_write_bytes(target, b"cvnet" * 1000)
    assert sha256_file(target, chunk_size=7) == sha256_bytes(b"cvnet" * 1000)
    assert sha256_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
