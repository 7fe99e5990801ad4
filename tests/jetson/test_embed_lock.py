"""Two cvnet-embed runs into one output folder: the second is refused, naming the folder and the
process that holds it; once that process is gone (even killed) the folder is free again."""

import os
import shutil
import subprocess
import sys

import pytest

from cvnet.core.cli import EXIT_ERROR, EXIT_OK
from cvnet.core.fileio import LOCK_FILE
from cvnet.jetson.cli import main

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny")
ENGINE = os.path.join(TINY, "cvnet_tiny.onnx")

#: Another process holding the lock as a running cvnet-embed does (flock + its process id).
HOLDER = """
import fcntl, os, sys, time
handle = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(handle, fcntl.LOCK_EX)
os.write(handle, ("%d\\n" % os.getpid()).encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_one_folder_is_refused(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(os.path.join(TINY, "images")))[:2]:
        shutil.copy(os.path.join(TINY, "images", name), str(images / name))
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / LOCK_FILE)],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = ["embed", "--engine", ENGINE, "--images", str(images), "-o", str(out)]
        assert main(args) == EXIT_ERROR
        message = caplog.records[-1].getMessage()
        assert str(out) in message and "process {}".format(holder.pid) in message
        assert sorted(os.listdir(str(out))) == [LOCK_FILE]  # nothing written beside it
    finally:
        holder.kill()
        holder.wait()
    assert main(args) == EXIT_OK  # the killed holder left no lock behind
