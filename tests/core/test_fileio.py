"""Atomic writes leave either the old file or the new one, never a temporary file."""

import errno
import os
import stat

import pytest

from cvnet.core.errors import OutputPathError
from cvnet.core.fileio import (atomic_path, check_writable, sha256_bytes, sha256_file,
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


class DiskLog(object):
    """Records, in order, every fsync (what the descriptor names, and a file's content at that
    moment) and every rename, while still doing them."""

    def __init__(self, monkeypatch, fail_folders=None, fail_content=None, fail_target=None):
        self.events = []
        self._fsync, self._replace = os.fsync, os.replace
        self._fail_folders = fail_folders
        self._fail_content = fail_content  # a file's fsync fails (EIO) when it holds this
        self._fail_target = fail_target  # a rename onto this path fails (EIO)
        monkeypatch.setattr(os, "fsync", self.fsync)
        monkeypatch.setattr(os, "replace", self.replace)

    def fsync(self, fd):
        path = os.readlink("/proc/self/fd/{}".format(fd))
        if os.path.isdir(path):
            self.events.append(("fsync-folder", path))
            if self._fail_folders is not None:
                raise OSError(self._fail_folders, os.strerror(self._fail_folders))
        else:
            self.events.append(("fsync-file", path, os.pread(fd, 1 << 20, 0)))
            if self.events[-1][2] == self._fail_content:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._fsync(fd)

    def replace(self, source, target):
        self.events.append(("rename", source, target))
        if target == self._fail_target:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._replace(source, target)


def test_a_commit_is_fsynced_file_first_then_its_folder(tmp_path, monkeypatch):
    """The file's content is on the disk before it gets its name, the name before return."""
    log = DiskLog(monkeypatch)
    folder = os.path.realpath(str(tmp_path))
    path = os.path.join(folder, "index-00000.csv")
    write_bytes_atomic(path, b"path,status\na.png,ok\n")
    (_, synced, content), (_, source, target), (_, synced_folder) = log.events
    assert content == b"path,status\na.png,ok\n"  # complete when synced, not before writing
    assert synced == source and os.path.dirname(source) == folder and target == path
    assert synced_folder == folder  # after the rename: the rename itself is durable


def test_files_written_with_a_path_are_fsynced_too(tmp_path, monkeypatch):
    """Writers that take a path (torch.save, savefig) get the same guarantee."""
    log = DiskLog(monkeypatch)
    path = str(tmp_path / "model.pt")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"weights" * 1000)
    kinds = [event[0] for event in log.events]
    assert kinds == ["fsync-file", "rename", "fsync-folder"]
    assert log.events[0][2] == b"weights" * 1000


def test_the_embedding_store_commits_its_npy_before_the_index_exists(tmp_path, monkeypatch):
    """The index is the commit marker: after a power loss it must never name rows whose
    .npy did not reach the disk."""
    import numpy as np

    from cvnet.jetson.store import FORMAT, IndexRow, write_chunk, write_meta

    folder = os.path.realpath(str(tmp_path))
    write_meta(folder, {"format": FORMAT, "format_version": 2, "embedding_dim": 2})
    log = DiskLog(monkeypatch)
    write_chunk(folder, 0, np.ones((1, 2), np.float32), [IndexRow("a.png", "ok", 0, "", "")])
    names = [(event[0], os.path.basename(event[-1] if event[0] != "fsync-file" else event[1]))
             for event in log.events]
    npy_done = names.index(("fsync-folder", os.path.basename(folder)))
    assert names[npy_done - 1] == ("rename", "emb-00000.npy")
    assert names[npy_done + 2] == ("rename", "index-00000.csv")
    assert names[-1] == ("fsync-folder", os.path.basename(folder))
    assert log.events[npy_done + 1][2].startswith(b"path,status,row")


def test_new_folders_are_fsynced_into_their_parents(tmp_path, monkeypatch):
    from cvnet.core.fileio import make_folders

    log = DiskLog(monkeypatch)
    base = os.path.realpath(str(tmp_path))
    made = make_folders(os.path.join(base, "runs", "t"))
    assert os.path.isdir(made)
    assert log.events == [("fsync-folder", base), ("fsync-folder", os.path.join(base, "runs"))]
    log.events[:] = []
    make_folders(made)  # exists: nothing to do
    assert log.events == []


def test_a_folder_fsync_the_file_system_refuses_is_let_through_but_an_io_error_is_not(
        tmp_path, monkeypatch):
    DiskLog(monkeypatch, fail_folders=errno.EINVAL)  # e.g. some FUSE and network mounts
    path = str(tmp_path / "a.json")
    write_text_atomic(path, "{}")
    assert open(path).read() == "{}"
    monkeypatch.undo()
    DiskLog(monkeypatch, fail_folders=errno.EIO)
    with pytest.raises(OutputPathError, match="b.json.*(I/O|Input/output) error"):
        write_text_atomic(str(tmp_path / "b.json"), "{}")


def _artefact_and_sidecar(tmp_path):
    """An ONNX file and its sidecar from an earlier write: (folder, [artefact, sidecar])."""
    folder = os.path.realpath(str(tmp_path))
    paths = [os.path.join(folder, "a.onnx"), os.path.join(folder, "a.onnx.json")]
    write_files_atomic({paths[0]: b"old graph", paths[1]: b"old sidecar"})
    return folder, paths


def _contents(paths):
    return [open(path, "rb").read() for path in paths]


def test_an_artefact_and_its_sidecar_are_committed_in_order_then_their_folder(tmp_path,
                                                                              monkeypatch):
    """Both complete on the disk before either is renamed; the artefact renamed first, the
    sidecar (the commit marker) last; the folder fsynced once, after both."""
    folder, paths = _artefact_and_sidecar(tmp_path)
    log = DiskLog(monkeypatch)
    assert write_files_atomic({paths[0]: b"graph", paths[1]: b"{}"}) == paths
    kinds = [event[0] for event in log.events]
    assert kinds == ["fsync-file", "fsync-file", "rename", "rename", "fsync-folder"]
    assert [event[2] for event in log.events[:2]] == [b"graph", b"{}"]
    assert [event[2] for event in log.events[2:4]] == paths
    assert log.events[4] == ("fsync-folder", folder)
    assert _contents(paths) == [b"graph", b"{}"]
    assert sorted(os.listdir(folder)) == ["a.onnx", "a.onnx.json"]


def test_an_error_before_the_first_rename_replaces_nothing(tmp_path, monkeypatch):
    """The artefact's data cannot be made durable (EIO): neither file is replaced, no
    temporary file is left, and the error names the artefact."""
    folder, paths = _artefact_and_sidecar(tmp_path)
    log = DiskLog(monkeypatch, fail_content=b"new graph")
    with pytest.raises(OutputPathError, match=r"cannot write .*a\.onnx: (I/O|Input/output) "):
        write_files_atomic({paths[0]: b"new graph", paths[1]: b"new sidecar"})
    assert [event[0] for event in log.events if event[0] == "rename"] == []
    assert _contents(paths) == [b"old graph", b"old sidecar"]
    assert sorted(os.listdir(folder)) == ["a.onnx", "a.onnx.json"]


def test_a_failed_sidecar_rename_leaves_the_new_artefact_beside_the_old_sidecar(tmp_path,
                                                                                monkeypatch):
    """What the docstring promises between two renames: the artefact is new, the sidecar old
    (readers refuse the pair by its SHA-256), the error says so, no temporary file is left."""
    folder, paths = _artefact_and_sidecar(tmp_path)
    DiskLog(monkeypatch, fail_target=paths[1])
    with pytest.raises(OutputPathError, match=r"a\.onnx\.json: .*\(already replaced: .*a\.onnx\)"):
        write_files_atomic({paths[0]: b"new graph", paths[1]: b"new sidecar"})
    assert _contents(paths) == [b"new graph", b"old sidecar"]
    assert sorted(os.listdir(folder)) == ["a.onnx", "a.onnx.json"]


def test_an_output_error_from_inside_the_block_names_its_own_file(tmp_path):
    """A writer that writes another file inside ``atomic_path`` and fails on it: the error is
    that file's, unchanged, not re-worded as a failure of the outer file."""
    missing = str(tmp_path / "missing" / "index.csv")
    with pytest.raises(OutputPathError) as inner:
        write_bytes_atomic(missing, b"")
    with pytest.raises(OutputPathError) as caught:
        with atomic_path(str(tmp_path / "model.pt")):
            write_bytes_atomic(missing, b"")
    assert str(caught.value) == str(inner.value)
    assert os.listdir(str(tmp_path)) == []
