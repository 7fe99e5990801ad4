"""The torch thread decision: free physical cores, explicit requests first, followed during a run.

The CPU facts it decides from are tested in tests/core/test_cpu.py.
"""

import pytest

from cvnet.core import cpu
from cvnet.core.cpu import CpuLoad, CpuSnapshot
from cvnet.models import threads
from cvnet.models.threads import (ThreadChoice, adapt_torch_threads, choose_threads,
                                  configure_torch, configured, decide_threads)


class FakeTorch(object):
    def __init__(self, threads):
        self.threads = threads

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, count):
        self.threads = count


class FakeMachine(object):
    """A clock, the machine's busy CPU seconds and this process's, moved by the test."""

    def __init__(self):
        self.wall, self.machine, self.own = 100.0, 1000.0, 5.0

    def run(self, seconds, others, own=0.0):
        """``seconds`` pass while other processes keep ``others`` cores busy."""
        self.wall += seconds
        self.machine += (others + own) * seconds
        self.own += own * seconds

    def snapshot(self):
        return CpuSnapshot(self.machine, self.own, self.wall, 2)

    def perf_counter(self):
        return self.wall

    def sleep(self, seconds):
        self.run(seconds, self.others)


@pytest.fixture(autouse=True)
def fresh_decision(monkeypatch):
    monkeypatch.setattr(threads, "_STATE", threads._State())
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.fixture
def machine(monkeypatch):
    """A 2-core machine whose load the test sets; measuring it takes 0.25 s of its clock."""
    fake = FakeMachine()
    fake.others = 0.0
    monkeypatch.setattr(threads, "physical_cores", lambda: 2)
    for module in (threads, cpu):  # the modules' clock, sleep and snapshots only
        monkeypatch.setattr(module, "cpu_snapshot", fake.snapshot)
        monkeypatch.setattr(module, "time", fake)
    return fake


@pytest.mark.parametrize("cores, others, cpus, expected", [
    (2, 0.0, 2, 2),     # idle: every core
    (2, 0.1, 2, 2),     # background noise does not count
    (2, 0.3, 2, 1),     # a process that is busy part of the time takes a core
    (2, 1.0, 2, 1),     # one busy process: the 2-core case the issue measured
    (2, 3.5, 2, 1),     # never fewer than one thread
    (4, 1.4, 4, 2),
    (4, None, 4, 4),    # unknown load: all cores
    (2, 1.0, 4, 2),     # 2 cores with 2 hyper-threads each: 3 CPUs idle, both cores run
    (2, 10.0, 16, 2),   # a --cpus 2 quota on 16 CPUs that others keep 10 busy: 6 idle
    (8, 10.0, 16, 6),   # no quota there: the 6 idle CPUs
    (64, 2.4, 64, 64),  # 64 CPUs read over 0.25 s: +-2.56 cores of tick resolution alone
    (64, 4.0, 64, 62),
])
def test_threads_run_on_the_cpus_other_processes_leave_idle(cores, others, cpus, expected):
    load = None if others is None else CpuLoad(others, cpus, 0.25)
    assert decide_threads(cores, load) == expected


def test_an_explicit_request_then_omp_num_threads_decide_before_the_measurement(monkeypatch):
    monkeypatch.setattr(threads, "others_busy_cores", lambda *a: pytest.fail("measured"))
    assert choose_threads(3).threads == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads(None) == ThreadChoice(1, "OMP_NUM_THREADS", threads.physical_cores())


def test_the_start_is_measured_once_and_applied_to_torch(machine, caplog):
    machine.others = 1.0
    torch = FakeTorch(2)
    with caplog.at_level("INFO", logger="cvnet.models.threads"):
        first = configure_torch(torch)
        torch.set_num_threads(2)  # something changed it meanwhile
        second = configure_torch(torch)
    assert first == second and first.threads == 1 and torch.threads == 1
    assert caplog.text.count("PyTorch CPU threads: 1 (2 physical cores, other processes busy "
                             "on 1.0 of 2 CPUs)") == 1
    assert configured() == first
    assert configure_torch(torch, requested=2).threads == 2 and torch.threads == 2


def test_contention_that_arrives_later_lowers_the_threads_and_its_end_raises_them(machine,
                                                                                   caplog):
    torch = FakeTorch(2)
    assert configure_torch(torch).threads == 2  # idle at the start
    machine.run(5.0, others=1.0, own=1.0)
    adapt_torch_threads()  # too soon to look again
    assert torch.threads == 2
    machine.run(6.0, others=1.0, own=1.0)
    with caplog.at_level("WARNING", logger="cvnet.models.threads"):
        adapt_torch_threads()
    assert torch.threads == 1 and configured().threads == 1
    assert "other processes now keep 1.0 cores busy: PyTorch CPU threads 2 -> 1" in caplog.text
    machine.run(11.0, others=0.0, own=1.0)
    adapt_torch_threads()
    assert torch.threads == 2


def test_a_requested_count_is_kept_whatever_the_load(machine):
    torch = FakeTorch(2)
    assert configure_torch(torch, requested=2).threads == 2
    machine.run(60.0, others=2.0)
    adapt_torch_threads()
    assert torch.threads == 2


def test_a_fixed_count_does_not_follow_the_load(machine, caplog):
    """Training and search (``adaptive=False``): measured once, logged as fixed, then kept
    whatever the load does, their own DataLoader workers included."""
    torch = FakeTorch(2)
    with caplog.at_level("INFO", logger="cvnet.models.threads"):
        assert configure_torch(torch, adaptive=False).threads == 2
    assert ("PyTorch CPU threads: 2 (2 physical cores, other processes busy on 0.0 of 2 CPUs), "
            "fixed for this run") in caplog.text
    machine.run(60.0, others=2.0)
    adapt_torch_threads()
    assert torch.threads == 2 and configured().threads == 2
    assert configure_torch(torch).threads == 2  # a later adaptive call: the first decided
    machine.run(60.0, others=2.0)
    adapt_torch_threads()
    assert torch.threads == 2

