"""What this process may use of the CPU, and how busy other processes keep it (torch-free).

The facts every thread decision needs, for both worlds: the host's PyTorch policy
(:mod:`cvnet.models.threads`) and the device's ONNX Runtime defaults, benchmark reports and
machine probe (:mod:`cvnet.engines.machine`). Device-side: Python 3.6, standard library only.

- **Which CPUs:** the affinity mask (``os.sched_getaffinity``: ``taskset``, ``docker
  --cpuset-cpus``), else every CPU;
- **how much of them:** a cgroup CPU quota (``docker --cpus``, Kubernetes limits; cgroup v2
  ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), which caps the cores
  :func:`physical_cores` reports;
- **how busy:** the busy time of exactly those CPUs in ``/proc/stat`` (their ``cpuN`` lines, not
  the machine-wide ``cpu`` line) minus this process's own CPU time, over a window
  (:func:`others_busy_cores`); :func:`noise_cores` says how much of a reading is noise.

Off Linux (no ``/proc``, no ``resource``) nothing raises: the CPU count is ``os.cpu_count()`` and
the load of other processes is unknown (None).
"""

import math
import os
import time
from typing import Callable, List, NamedTuple, Optional, Set

#: ``read(path)``: a file's text, or None when it cannot be read.
Reader = Callable[[str], Optional[str]]

#: Where the cgroup file systems are mounted.
CGROUP_ROOT = "/sys/fs/cgroup"
#: cgroup v1 mount folders of the ``cpu`` controller, as distributions name them.
CGROUP_V1_CPU = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
#: CPU use of background processes (a shell, a logger, kernel threads), in cores, that does not
#: count as contention.
BACKGROUND_CORES = 0.1
#: /proc/stat's tick rate when ``os.sysconf`` cannot say (the Linux default).
DEFAULT_CLOCK_TICKS = 100


def read_system_file(path: str) -> Optional[str]:
    """The text of a /proc or /sys file, or None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def affinity() -> Optional[Set[int]]:
    """The CPUs this process may run on (its affinity mask), or None where it cannot be read."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity), else ``os.cpu_count()``.

    A cgroup quota does not change this count (the CPUs stay usable, for a share of the time);
    :func:`physical_cores` applies it.
    """
    cpus = affinity()
    return len(cpus) if cpus else os.cpu_count() or 1


def _ancestors(base: str, path: str) -> List[str]:
    """``base/path`` and each folder above it, up to ``base`` itself."""
    folder = os.path.normpath(os.path.join(base, path.lstrip("/")))
    if not folder.startswith(base):  # a path with ".." out of the mount: the mount's root
        return [base]
    found = [folder]
    while len(folder) > len(base) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
        found.append(folder)
    return found


def _number(text: Optional[str]) -> Optional[int]:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def cpu_quota(read: Reader = read_system_file) -> Optional[float]:
    """CPUs' worth of time a cgroup CPU quota allows this process, or None without a quota.

    Reads this process's cgroup (``/proc/self/cgroup``) and every cgroup above it, as the
    kernel enforces the smallest limit on the way up: cgroup v2 ``cpu.max`` (``"200000
    100000"`` is 2 CPUs, ``"max 100000"`` no limit), v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us`` (a quota of -1 is no limit). In a container the cgroup's path may not
    exist in its own view of ``/sys/fs/cgroup``; the mount's root, which is then the
    container's cgroup, is read too.

    Args:
        read: Reads a file (a test's stand-in).
    """
    v2_path, v1_path = None, None
    for line in (read("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        elif "cpu" in parts[1].split(","):
            v1_path = parts[2]
    quotas = []
    if v2_path is not None:
        for folder in _ancestors(CGROUP_ROOT, v2_path):
            fields = (read(os.path.join(folder, "cpu.max")) or "").split()
            if len(fields) == 2 and fields[0] != "max":
                quota, period = _number(fields[0]), _number(fields[1])
                if quota and period and quota > 0 and period > 0:
                    quotas.append(quota / float(period))
    if v1_path is not None:
        for mount in CGROUP_V1_CPU:
            for folder in _ancestors(os.path.join(CGROUP_ROOT, mount), v1_path):
                quota = _number(read(os.path.join(folder, "cpu.cfs_quota_us")))
                period = _number(read(os.path.join(folder, "cpu.cfs_period_us")))
                if quota and period and quota > 0 and period > 0:
                    quotas.append(quota / float(period))
    return min(quotas) if quotas else None


def physical_cores(cpuinfo: Optional[str] = None, read: Reader = read_system_file) -> int:
    """Physical cores this process may use.

    The distinct (physical id, core id) pairs in /proc/cpuinfo among the CPUs of the affinity
    mask (two hyper-threads of one core count once); the logical CPUs where /proc/cpuinfo has
    no core ids (some ARM boards) or cannot be read. A cgroup CPU quota caps the answer
    (rounded down, at least 1): a container limited to ``--cpus 2`` on a 16-core host reports
    2.

    Args:
        cpuinfo: The text of /proc/cpuinfo (read when None).
        read: Reads a file (a test's stand-in), for /proc/cpuinfo and the cgroup files.
    """
    text = cpuinfo if cpuinfo is not None else read("/proc/cpuinfo") or ""
    allowed = affinity()
    cores = set()
    processor, physical, core = None, None, None
    for line in text.splitlines() + [""]:
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "processor":
            processor = _number(value)
        elif name == "physical id":
            physical = value.strip()
        elif name == "core id":
            core = value.strip()
        elif not name:
            if core is not None and (allowed is None or processor is None
                                     or processor in allowed):
                cores.add((physical, core))
            processor, physical, core = None, None, None
    logical = usable_cpus()
    found = max(1, min(len(cores), logical)) if cores else logical
    quota = cpu_quota(read)
    return max(1, min(found, int(math.floor(quota)))) if quota is not None else found


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages (machine-wide), or None."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# -- how busy other processes keep this process's CPUs ---------------------------------------


def clock_ticks() -> int:
    """/proc/stat's counter ticks per second (``CLK_TCK``)."""
    try:
        return int(os.sysconf("SC_CLK_TCK")) or DEFAULT_CLOCK_TICKS
    except (AttributeError, ValueError, OSError):
        return DEFAULT_CLOCK_TICKS


def busy_seconds(stat: str, cpus: Optional[Set[int]]) -> Optional[float]:
    """CPU seconds the CPUs ``cpus`` have run anything, from the text of /proc/stat.

    Args:
        stat: The text of /proc/stat.
        cpus: CPU numbers (their ``cpuN`` lines are summed); None sums the machine-wide
            ``cpu`` line, where the affinity mask is unknown.

    Returns:
        Busy seconds (user, nice, system, irq, softirq, steal: all but idle and iowait), or
        None when no line of ``cpus`` is there.
    """
    names = {"cpu"} if cpus is None else {"cpu{}".format(number) for number in cpus}
    busy, found = 0, False
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] in names:
            ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait ...
            busy += sum(ticks) - ticks[3] - ticks[4]
            found = True
    return busy / float(clock_ticks()) if found else None


class CpuSnapshot(NamedTuple):
    """CPU time at one moment: of the sampled CPUs (all processes) and of this process.

    Attributes:
        busy: Seconds the sampled CPUs have run anything.
        own: Seconds this process has run (all its threads; not its children).
        wall: ``time.perf_counter()`` then.
        cpus: How many CPUs were sampled (the affinity mask's).
    """

    busy: float
    own: float
    wall: float
    cpus: int


class CpuLoad(NamedTuple):
    """What other processes used of this process's CPUs over a window.

    Attributes:
        others: Cores' worth of CPU other processes used (per wall second).
        cpus: CPUs sampled.
        seconds: The window's length.
    """

    others: float
    cpus: int
    seconds: float

    @property
    def noise(self) -> float:
        """Use under which :attr:`others` is noise (see :func:`noise_cores`)."""
        return noise_cores(self.cpus, self.seconds)


def noise_cores(cpus: int, seconds: float) -> float:
    """CPU use of other processes, in cores, below which a reading is noise, not contention.

    Background processes (:data:`BACKGROUND_CORES`) plus the resolution of /proc/stat: each
    sampled CPU's counters move in ticks of ``1 / CLK_TCK`` s, so each may read up to one tick
    off over the window. On 2 CPUs over 0.25 s at 100 ticks/s that is 0.1 + 0.08 = 0.18 core;
    over a 10 s window, 0.1 + 0.002; on 64 CPUs over 0.25 s, 0.1 + 2.56.

    Args:
        cpus: CPUs sampled.
        seconds: The window's length.
    """
    return BACKGROUND_CORES + cpus / (clock_ticks() * max(seconds, 1e-3))


def cpu_snapshot() -> Optional[CpuSnapshot]:
    """CPU time now of this process's CPUs and of this process; None where it cannot be read
    (no /proc/stat, no ``resource`` module: not Linux)."""
    text = read_system_file("/proc/stat")
    if text is None:
        return None
    cpus = affinity()
    busy = busy_seconds(text, cpus)
    if busy is None:
        return None
    try:
        import resource  # POSIX only: not importable on Windows
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSnapshot(busy, usage.ru_utime + usage.ru_stime, time.perf_counter(),
                       len(cpus) if cpus else os.cpu_count() or 1)


def others_between(before: CpuSnapshot, after: CpuSnapshot) -> Optional[CpuLoad]:
    """What other processes used of this process's CPUs between two snapshots.

    The sampled CPUs' busy time minus this process's own CPU time (all its threads), per wall
    second; None for an empty interval.
    """
    elapsed = after.wall - before.wall
    if elapsed <= 0:
        return None
    others = ((after.busy - before.busy) - (after.own - before.own)) / elapsed
    return CpuLoad(max(0.0, others), after.cpus, elapsed)


def others_busy_cores(seconds: float) -> Optional[CpuLoad]:
    """What other processes use of this process's CPUs now, measured over ``seconds``."""
    before = cpu_snapshot()
    if before is None:
        return None
    time.sleep(seconds)
    after = cpu_snapshot()
    return others_between(before, after) if after is not None else None
