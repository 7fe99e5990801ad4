"""Every file cvnet commits goes through cvnet.core.fileio (atomic, fsynced file and folder).

A static check of the sources: a writer that opens a file for writing, renames, creates a
folder, or calls a library's save-to-path directly (``open(..., "w")``, ``os.replace``,
pathlib's ``write_text``/``write_bytes``/``mkdir``/``touch``, numpy's ``save``/``savetxt``/
``tofile``, ``cv2.imwrite``, ``savefig``, ``torch.save``, ``shutil.copy``) would skip the
fsyncs. The few calls that write to a temporary path from ``atomic_path``, to an in-memory
buffer or to a scratch folder are listed with why.
"""

import os
import re

import pytest

from tests.device_modules import ROOT

pytestmark = pytest.mark.device

PACKAGES = ("cvnet", "engines", "jetson", "benchmarks", "export")
#: Calls that write a file, or move one into place, by themselves.
WRITES = re.compile(r"open\([^)]*['\"][wax]b?\+?['\"]|"
                    r"os\.(replace|rename|renames|makedirs|mkdir)\(|"
                    r"os\.open\([^)]*O_(WRONLY|RDWR|CREAT)|"
                    r"\.(write_text|write_bytes|mkdir|touch|tofile)\(|"
                    r"np\.(save|savez|savez_compressed|savetxt)\(|cv2\.imwrite\(|\.savefig\(|"
                    r"torch\.save\(|shutil\.(copy|move)")
#: (file, the call) -> why it is fine.
ALLOWED = {
    ("cvnet/core/fileio.py", "open(path, \"wb\")"): "the helper itself",
    ("cvnet/core/fileio.py", "os.replace("): "the helper itself",
    ("cvnet/core/fileio.py", "os.mkdir("): "the helper itself",
    ("cvnet/core/fileio.py", "os.open(tmp, os.O_WRONLY | os.O_CREAT"): "the helper itself: "
                                                                    "the temporary file",
    ("cvnet/core/fileio.py", "os.open(path, os.O_RDWR | os.O_CREAT"): "the helper itself: "
                                                                   "folder_lock's lock file",
    ("cvnet/models/checkpoint.py", "torch.save("): "into atomic_path's temporary file",
    ("jetson/store.py", "np.save("): "into a BytesIO, then write_bytes_atomic",
    ("cvnet/core/distances.py", "np.savez("): "into a BytesIO, then write_bytes_atomic",
    ("jetson/eval_plots.py", ".savefig("): "into atomic_path's temporary file",
    ("benchmarks/embed_soak.py", "cv2.imwrite("): "scratch images in a temporary folder",
    ("benchmarks/embed_soak.py", "os.makedirs("): "scratch folder, deleted after the run",
    ("benchmarks/fsync_cost.py", "os.makedirs("): "scratch folder, deleted after the run",
    ("cvnet/gpucheck/run.py", "open(log_path, \"wb\")"): "a step's live log, streamed while it runs",
}


def _sources():
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, ROOT).replace(os.sep, "/"), path


def test_no_writer_bypasses_fileio():
    found = set()
    for relative, path in _sources():
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                code = line.split("#")[0]
                if code.strip().startswith(('"', "'", ">>>", "...")):
                    continue  # docstrings
                for match in WRITES.finditer(code):
                    call = next((key[1] for key in ALLOWED
                                 if key[0] == relative and key[1] in code), None)
                    found.add((relative, number, match.group(0), call))
    bypasses = ["{}:{}: {}".format(f, n, c) for f, n, c, allowed in sorted(found)
                if allowed is None]
    assert not bypasses, ("write these through cvnet.core.fileio (write_bytes_atomic, atomic_path, "
                          "make_folders):\n" + "\n".join(bypasses))
    used = {(f, allowed) for f, _, _, allowed in found if allowed is not None}
    assert used == set(ALLOWED), "stale exceptions: {}".format(set(ALLOWED) - used)


@pytest.mark.parametrize("line", [
    'open(path, "w")', "io.open(path, mode='ab')", 'Path(p).open("wb")',
    "os.replace(tmp, path)", "os.makedirs(folder)", "fd = os.open(path, os.O_WRONLY | os.O_CREAT)",
    "Path(out).write_text(text)", "path.write_bytes(data)", "Path(folder).mkdir(parents=True)",
    "Path(marker).touch()", "np.save(path, array)", "np.savez_compressed(path, a=x)",
    "np.savetxt(path, array)", "array.tofile(path)", "cv2.imwrite(path, image)",
    "figure.savefig(path)", "torch.save(state, path)", "shutil.copyfile(a, b)",
])
def test_the_scan_finds_every_kind_of_write(line):
    """The scan itself: each way of writing a file by hand is caught (pathlib's and numpy's
    too), so the check above cannot pass by not seeing a writer."""
    assert WRITES.search(line), line


@pytest.mark.parametrize("line", ['open(path, "rb")', "Path(p).read_text()", "np.load(path)",
                                  "write_text_atomic(path, text)", "os.open(path, os.O_RDONLY)"])
def test_the_scan_lets_reads_and_the_helpers_through(line):
    assert not WRITES.search(line), line

