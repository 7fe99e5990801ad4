"""Every file cvnet commits goes through cvnet.core.fileio (atomic, fsynced file and folder).

A static check of the sources: a writer that opens a file for writing, renames, or calls a
library's save-to-path directly would skip the fsyncs. The few calls that write to a temporary
path from ``atomic_path``, to an in-memory buffer or to a scratch folder are listed with why.
"""

import os
import re

import pytest

from tests.device_modules import ROOT

pytestmark = pytest.mark.device

PACKAGES = ("cvnet", "engines", "jetson", "benchmarks", "export")
#: Calls that write a file, or move one into place, by themselves.
WRITES = re.compile(r"open\([^)]*['\"][wax]b?\+?['\"]|os\.(replace|rename|makedirs|mkdir)\(|"
                    r"np\.save[z]?\(|cv2\.imwrite\(|\.savefig\(|torch\.save\(|shutil\.(copy|move)")
#: (file, the call) -> why it is fine.
ALLOWED = {
    ("cvnet/core/fileio.py", "open(path, \"wb\")"): "the helper itself",
    ("cvnet/core/fileio.py", "os.replace("): "the helper itself",
    ("cvnet/core/fileio.py", "os.mkdir("): "the helper itself",
    ("cvnet/models/checkpoint.py", "torch.save("): "into atomic_path's temporary file",
    ("benchmarks/report.py", ".savefig("): "into atomic_path's temporary file",
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
