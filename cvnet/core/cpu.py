"""What this process may use of the CPU, and how busy other processes keep it (torch-free).

The facts every thread decision needs, for both worlds: the host's PyTorch policy
(:mod:`cvnet.models.threads`) and the device's ONNX Runtime defaults, benchmark reports and
machine probe (:mod:`cvnet.engines.machine`). Device-side: Python 3.6, standard library only.
"""

import os
import resource
import time
from typing import List, NamedTuple, Optional


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_system_file(path: str) -> Optional[str]:
    """The text of a /proc or /sys file, or None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def physical_cores(cpuinfo: Optional[str] = None) -> int:
    """Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo, else os.cpu_count.

    The affinity mask caps the answer, so a container limited to 2 CPUs reports at most 2.
    """
    text = cpuinfo if cpuinfo is not None else read_system_file("/proc/cpuinfo") or ""
    cores = set()
    physical, core = None, None
    for line in text.splitlines() + [""]:
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "physical id":
            physical = value.strip()
        elif name == "core id":
            core = value.strip()
        elif not name:
            if core is not None:
                cores.add((physical, core))
            physical, core = None, None
    logical = usable_cpus()
    return max(1, min(len(cores), logical)) if cores else logical


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages, or None."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _busy_seconds(stat: str) -> Optional[float]:
    """CPU seconds all processes have run, from the ``cpu`` line of /proc/stat."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait ...
            busy = sum(ticks) - ticks[3] - ticks[4]
            return busy / float(os.sysconf("SC_CLK_TCK"))
    return None


class CpuSnapshot(NamedTuple):
    """CPU seconds run by the whole machine and by this process, at one wall-clock time."""

    machine: float
    own: float
    wall: float


def cpu_snapshot() -> Optional[CpuSnapshot]:
    """The machine's and this process's CPU time now; None where /proc/stat cannot be read."""
    text = read_system_file("/proc/stat")
    machine = _busy_seconds(text) if text is not None else None
    if machine is None:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSnapshot(machine, usage.ru_utime + usage.ru_stime, time.perf_counter())


def others_between(before: CpuSnapshot, after: CpuSnapshot) -> Optional[float]:
    """Cores' worth of CPU other processes used between two snapshots.

    The machine's busy time minus this process's own CPU time (all its threads), per wall
    second; None for an empty interval.
    """
    elapsed = after.wall - before.wall
    if elapsed <= 0:
        return None
    return max(0.0, ((after.machine - before.machine) - (after.own - before.own)) / elapsed)


def others_busy_cores(seconds: float) -> Optional[float]:
    """Cores' worth of CPU that other processes use now, measured over ``seconds``."""
    before = cpu_snapshot()
    if before is None:
        return None
    time.sleep(seconds)
    after = cpu_snapshot()
    return others_between(before, after) if after is not None else None
