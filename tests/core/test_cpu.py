"""The CPU facts thread decisions use: this process's CPUs, and how busy other processes keep
them (the PyTorch policy that uses them is tested in tests/cvnet/test_threads.py)."""

import subprocess
import sys

import pytest

from cvnet.core.cpu import CpuSnapshot, cpu_snapshot, others_between, others_busy_cores

pytestmark = pytest.mark.device


def test_the_load_of_others_excludes_this_process():
    start = CpuSnapshot(machine=1000.0, own=5.0, wall=100.0)
    assert others_between(start, CpuSnapshot(1001.5, 5.5, 101.0)) == pytest.approx(1.0)
    assert others_between(start, CpuSnapshot(1001.0, 6.0, 101.0)) == 0.0  # all of it was ours
    assert others_between(start, start) is None


def test_a_busy_process_is_seen():
    if cpu_snapshot() is None:
        pytest.skip("no /proc/stat here")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        others = others_busy_cores(0.5)
    finally:
        busy.kill()
        busy.wait()
    assert others >= 0.5  # the busy process alone keeps a core busy (or its share of one)

