"""The CPU facts thread decisions use: this process's CPUs, and how busy other processes keep
them (the PyTorch policy that uses them is tested in tests/cvnet/test_threads.py)."""

import os
import subprocess
import sys
import time

import pytest

from cvnet.core import cpu
from cvnet.core.cpu import (CpuLoad, CpuSnapshot, busy_seconds, cpu_quota, cpu_snapshot,
                            noise_cores, others_between, others_busy_cores, physical_cores)
from tests.device_modules import ROOT

pytestmark = pytest.mark.device


def test_a_busy_process_is_seen():
    if cpu_snapshot() is None:
        pytest.skip("no /proc/stat here")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        others = others_busy_cores(0.5).others
    finally:
        busy.kill()
        busy.wait()
    assert others >= 0.5  # the busy process alone keeps a core busy (or its share of one)


def test_this_process_busy_is_not_counted_as_others():
    """The converse: while this process keeps a core busy, the other processes' use stays what
    it was just before (this process's own time is subtracted); counted, it would rise by about
    that core. The machine is shared, so the reading is compared with one taken just before,
    and a few tries are allowed for the others' load to hold still."""
    if cpu_snapshot() is None:
        pytest.skip("no /proc/stat here")
    tries = []
    for _ in range(5):
        baseline = others_busy_cores(0.3).others
        before = cpu_snapshot()
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:  # this process busy on one core
            pass
        after = cpu_snapshot()
        load = others_between(before, after)
        own = (after.own - before.own) / load.seconds
        if own < 0.5:
            continue  # it barely ran: too busy a machine to tell
        tries.append("others {:.2f} before, {:.2f} while this process used {:.2f}".format(
            baseline, load.others, own))
        if load.others < baseline + own / 2:
            return
    if not tries:
        pytest.skip("this process never got half a core in 5 tries: the machine is too busy")
    pytest.fail("this process's own CPU time was counted as other processes':\n  " +
                "\n  ".join(tries))


def test_the_load_of_others_excludes_this_process():
    start = CpuSnapshot(busy=1000.0, own=5.0, wall=100.0, cpus=2)
    assert others_between(start, CpuSnapshot(1001.5, 5.5, 101.0, 2)) == CpuLoad(1.0, 2, 1.0)
    assert others_between(start, CpuSnapshot(1001.0, 6.0, 101.0, 2)).others == 0.0  # ours
    assert others_between(start, start) is None


STAT = """cpu  9000 0 900 90000 100 0 0 0 0 0
cpu0 1000 0 100 10000 10 0 0 0 0 0
cpu1 2000 0 200 20000 20 0 0 0 0 0
cpu2 3000 0 300 30000 30 0 0 0 0 0
cpu3 3000 0 300 30000 40 0 0 0 0 0
intr 123 4 5
"""


def test_only_the_cpus_this_process_may_use_are_summed(monkeypatch):
    """Busy CPUs outside the affinity mask are not contention: cpu1 and cpu3 are summed, not
    the machine-wide ``cpu`` line."""
    monkeypatch.setattr(cpu, "clock_ticks", lambda: 100)
    assert busy_seconds(STAT, {1, 3}) == pytest.approx((2000 + 200 + 3000 + 300) / 100.0)
    assert busy_seconds(STAT, None) == pytest.approx((9000 + 900) / 100.0)  # mask unknown
    assert busy_seconds(STAT, {7}) is None  # no line for the CPUs: unknown, not idle
    monkeypatch.setattr(cpu, "affinity", lambda: {1, 3})
    monkeypatch.setattr(cpu, "read_system_file", lambda path: STAT if path == "/proc/stat"
                        else None)
    snapshot = cpu_snapshot()
    assert snapshot.busy == pytest.approx(55.0) and snapshot.cpus == 2


def _files(files):
    """A ``read(path)`` over a dict of fake /proc and /sys files."""
    return lambda path: files.get(path)


@pytest.mark.parametrize("files, quota", [
    ({}, None),
    ({"/proc/self/cgroup": "0::/\n"}, None),  # v2 root: no cpu.max
    ({"/proc/self/cgroup": "0::/docker/abc\n",
      "/sys/fs/cgroup/docker/abc/cpu.max": "150000 100000\n"}, 1.5),
    ({"/proc/self/cgroup": "0::/docker/abc\n",
      "/sys/fs/cgroup/docker/abc/cpu.max": "max 100000\n",
      "/sys/fs/cgroup/docker/cpu.max": "300000 100000\n"}, 3.0),  # a parent's limit holds
    ({"/proc/self/cgroup": "0::/k8s/pod/c\n",
      "/sys/fs/cgroup/k8s/pod/c/cpu.max": "400000 100000\n",
      "/sys/fs/cgroup/k8s/pod/cpu.max": "200000 100000\n"}, 2.0),  # the smallest on the way
    ({"/proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n",
      "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
      "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 2.0),  # v1
    ({"/proc/self/cgroup": "3:cpu:/\n", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
    ({"/proc/self/cgroup": "5:cpuacct,cpu:/docker/abc\n",  # the container's view: the host's
      "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n",  # path is not there, the mount's
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # root is its cgroup
])
def test_a_cgroup_cpu_quota_is_read_from_v1_and_v2(files, quota):
    assert cpu_quota(_files(files)) == quota


CPUINFO = "".join("processor\t: {0}\nphysical id\t: 0\ncore id\t\t: {1}\n\n".format(
    number, number // 2) for number in range(8))  # 4 cores with 2 hyper-threads each


@pytest.mark.parametrize("mask, files, cores", [
    (set(range(8)), {}, 4),
    ({0, 1, 2}, {}, 2),  # CPUs 0-2: core 0 (both threads) and core 1
    ({0, 2, 4, 6}, {}, 4),
    (set(range(8)), {"/proc/self/cgroup": "0::/c\n", "/sys/fs/cgroup/c/cpu.max":
                     "200000 100000"}, 2),  # docker --cpus 2
    (set(range(8)), {"/proc/self/cgroup": "0::/c\n", "/sys/fs/cgroup/c/cpu.max":
                     "50000 100000"}, 1),  # half a CPU: still one thread
])
def test_physical_cores_are_those_of_the_affinity_mask_capped_by_the_quota(monkeypatch, mask,
                                                                          files, cores):
    monkeypatch.setattr(cpu, "affinity", lambda: mask)
    assert physical_cores(CPUINFO, read=_files(files)) == cores


def test_the_noise_of_a_reading_grows_with_the_cpus_it_sums(monkeypatch):
    monkeypatch.setattr(cpu, "clock_ticks", lambda: 100)
    assert noise_cores(2, 0.25) == pytest.approx(0.18)  # 2 CPUs, one tick each, over 0.25 s
    assert noise_cores(2, 10.0) == pytest.approx(0.102)  # a long window: background only
    assert noise_cores(64, 0.25) == pytest.approx(2.66)
    assert CpuLoad(1.0, 16, 0.5).noise == pytest.approx(noise_cores(16, 0.5))


def test_without_proc_or_resource_nothing_raises(monkeypatch):
    """Off Linux (no /proc, no affinity call) and on Windows (no ``resource`` module): the CPU
    count is os.cpu_count() and the load unknown."""
    monkeypatch.setattr(cpu, "read_system_file", lambda path: None)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert cpu.affinity() is None and cpu.usable_cpus() == (os.cpu_count() or 1)
    assert physical_cores() == (os.cpu_count() or 1)
    assert cpu_snapshot() is None and others_busy_cores(0.01) is None
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "resource", None)  # ``import resource`` raises ImportError
    assert cpu_snapshot() is None


def test_the_cpu_facts_import_without_the_resource_module():
    """Windows has no ``resource``: importing the facts and the machine probe must not need it."""
    code = ("import sys; sys.modules['resource'] = None\n"
            "import cvnet.core.cpu, cvnet.engines.machine\n"
            "print(cvnet.engines.machine.peak_rss_mb(), cvnet.core.cpu.cpu_snapshot())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None"]
