"""The exit statuses of docs/cli.md, from real command runs: 0 done, 1 error, 2 usage, 3 partial.

Each case runs a device command in a fresh interpreter (``python3 -m cvnet.jetson ...``, as a
user would) and checks the status it ends with, so a command that returns the wrong constant, or
lets an exception escape (status 1 from Python's traceback, but no message), fails here.
"""

import os
import shutil
import subprocess
import sys

import pytest

from cvnet.core import cli
from tests.device_modules import ROOT

pytestmark = pytest.mark.device

TINY = os.path.join(ROOT, "tests", "fixtures", "tiny")
ENGINE = os.path.join(TINY, "cvnet_tiny.onnx")


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "cvnet.jetson"] + list(args), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    return done.returncode, done.stderr


def _images(folder, broken=False):
    os.makedirs(folder)
    for name in sorted(os.listdir(os.path.join(TINY, "images")))[:2]:
        shutil.copy(os.path.join(TINY, "images", name), os.path.join(folder, name))
    if broken:
        with open(os.path.join(folder, "broken.jpg"), "w") as handle:
            handle.write("not a JPEG\n")
    return folder


def test_done_is_0(tmp_path):
    status, err = _run("embed", "--engine", ENGINE, "--images", _images(str(tmp_path / "i")),
                       "-o", str(tmp_path / "out"))
    assert status == cli.EXIT_OK == 0, err


def test_refused_input_is_1_with_a_message(tmp_path):
    status, err = _run("embed", "--engine", str(tmp_path / "missing.onnx"), "--images",
                       _images(str(tmp_path / "i")), "-o", str(tmp_path / "out"))
    assert status == cli.EXIT_ERROR == 1, err
    assert "missing.onnx" in err and "Traceback" not in err


def test_bad_command_line_is_2(tmp_path):
    status, err = _run("embed", "--engine", ENGINE, "--images", str(tmp_path), "-o",
                       str(tmp_path / "out"), "--no-such-option")
    assert status == cli.EXIT_USAGE == 2, err
    assert "unrecognized arguments: --no-such-option" in err


def test_partial_failure_is_3(tmp_path):
    status, err = _run("embed", "--engine", ENGINE, "--images",
                       _images(str(tmp_path / "i"), broken=True), "-o", str(tmp_path / "out"))
    assert status == cli.EXIT_PARTIAL == 3, err
    assert "broken.jpg" in err
