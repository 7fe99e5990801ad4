"""How many CPU threads PyTorch runs with: decided here, once, for every torch path (host side).

PyTorch's CPU wheels parallelise each operator with GNU OpenMP (libgomp) over as many threads as
there are cores, and split the work evenly between them. When another process holds one of those
cores, every operator waits for the thread that is not running, while the others spin: on a
2-core machine with one busy process, a CVNet forward at batch 1 took several times longer than
with one thread (docs/threads.md has the measurements). ONNX Runtime's pool does not suffer this.

So a torch path asks :func:`configure_torch` for its threads: the physical cores this process
may use (its affinity mask, capped by a cgroup CPU quota) that other processes leave idle (at
least one thread), measured on this process's CPUs when the command starts
(:mod:`cvnet.core.cpu`, the torch-free facts). An explicit request wins (``cvnet-bench
--threads N``), then ``OMP_NUM_THREADS``; either fixes the count for the run.

Training and search decide once, at their start (``adaptive=False``): their own DataLoader
workers are other processes to /proc/stat, so a count that followed the load would follow the
run itself, and a changed count changes the order of floating-point sums between two runs of
the same ``--seed``. Inference follows contention that arrives later: the ``.pt`` runner calls
:func:`adapt_torch_threads` every batch, which at most every :data:`RECHECK_SECONDS` measures the
other processes again over the interval since the last check and changes the threads when the
answer changes. Every decision is logged.
"""

import logging
import math
import os
import time
from typing import Any, NamedTuple, Optional

from cvnet.core.cpu import (CpuLoad, CpuSnapshot, cpu_snapshot, others_between,
                            others_busy_cores, physical_cores)

logger = logging.getLogger(__name__)

#: Seconds over which other processes' CPU use is measured at start-up.
SAMPLE_SECONDS = 0.25
#: Seconds between two checks of the other processes' CPU use during inference.
RECHECK_SECONDS = 10.0


class ThreadChoice(NamedTuple):
    """The threads a torch path runs with, and why.

    Attributes:
        threads: Intra-op threads (``torch.set_num_threads``).
        reason: What decided it, for the log and the benchmark report.
        cores: Physical cores this process may use.
        others_busy: Cores' worth of CPU other processes used on this process's CPUs while
            measured (None when it was not measured or could not be read).
    """

    threads: int
    reason: str
    cores: int
    others_busy: Optional[float] = None


def decide_threads(cores: int, load: Optional[CpuLoad]) -> int:
    """Threads that run on CPUs other processes leave idle: at least 1, at most ``cores``.

    Args:
        cores: Physical cores this process may use.
        load: What other processes used of this process's CPUs (None: unknown, all cores).

    Returns:
        The sampled CPUs other processes leave idle, rounded down (use under the reading's
        noise, :attr:`cvnet.core.cpu.CpuLoad.noise`, does not count), capped at ``cores``,
        never below 1. When the CPUs are the cores, that is ``cores`` minus the other
        processes' use rounded up (a process busy 30% of the time takes a core).
    """
    if load is None:
        return max(1, cores)
    idle = load.cpus - max(0.0, load.others - load.noise)
    return max(1, min(cores, int(math.floor(idle + 1e-9))))


def _from_environment() -> Optional[int]:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        number = int(value.split(",")[0])
    except ValueError:
        return None
    return number if number >= 1 else None


def _measured(cores: int, load: Optional[CpuLoad]) -> ThreadChoice:
    if load is None:
        return ThreadChoice(cores, "physical cores; the load of other processes is unknown "
                                   "here", cores)
    return ThreadChoice(decide_threads(cores, load), "{} physical cores, other processes "
                        "busy on {:.1f} of {} CPUs".format(cores, load.others, load.cpus),
                        cores, round(load.others, 2))


def choose_threads(requested: Optional[int] = None) -> ThreadChoice:
    """The threads for this process's torch work (see the module docstring for the order).

    Args:
        requested: An explicit thread count (a command's ``--threads``); None decides.
    """
    cores = physical_cores()
    if requested is not None:
        return ThreadChoice(int(requested), "requested with --threads", cores)
    from_env = _from_environment()
    if from_env is not None:
        return ThreadChoice(from_env, "OMP_NUM_THREADS", cores)
    return _measured(cores, others_busy_cores(SAMPLE_SECONDS))


class _State(object):
    """What this process decided: the choice, how it was asked for, and the last check."""

    def __init__(self):
        self.choice = None  # type: Optional[ThreadChoice]
        self.requested = None  # type: Optional[int]
        self.torch = None  # type: Any
        self.checked = None  # type: Optional[CpuSnapshot]  (set while the count may adapt)


_STATE = _State()


def configured() -> Optional[ThreadChoice]:
    """The choice in force in this process, or None before :func:`configure_torch`.

    ``cvnet-bench`` (device-side) reads it through the ``cvnet.bench`` plugin ``torch_threads``
    for its report.
    """
    return _STATE.choice


def configure_torch(torch: Any, requested: Optional[int] = None,
                    adaptive: bool = True) -> ThreadChoice:
    """Sets ``torch``'s intra-op threads as :func:`choose_threads` decides.

    Every torch path calls this before its first operator. The decision (and the short
    measurement behind it) is made on the first call and kept; a later call with another
    explicit ``requested`` count decides again.

    Args:
        torch: The imported ``torch`` module (a test's stand-in).
        requested: An explicit thread count, e.g. ``cvnet-bench --threads``.
        adaptive: Let :func:`adapt_torch_threads` follow contention later (inference). False
            fixes a measured count for the process (training and search: see the module
            docstring); the first call decides.

    Returns:
        The choice applied.
    """
    state = _STATE
    if state.choice is None or requested != state.requested:
        state.choice, state.requested = choose_threads(requested), requested
        measured = requested is None and _from_environment() is None
        state.checked = cpu_snapshot() if measured and adaptive else None
        logger.info("PyTorch CPU threads: %d (%s)%s", state.choice.threads, state.choice.reason,
                    ", fixed for this run" if measured and not adaptive else "")
    state.torch = torch
    if torch.get_num_threads() != state.choice.threads:
        torch.set_num_threads(state.choice.threads)
    return state.choice


def adapt_torch_threads() -> None:
    """Follows the other processes' CPU use during inference; cheap enough to call every batch.

    At most every :data:`RECHECK_SECONDS`, and only when the count was measured for an
    adaptive path rather than requested or fixed: the other processes' use since the last check
    decides the threads again, and a change is applied and logged.
    """
    state = _STATE
    if state.checked is None or time.perf_counter() - state.checked.wall < RECHECK_SECONDS:
        return
    now = cpu_snapshot()
    load = others_between(state.checked, now) if now is not None else None
    if load is None:
        return
    choice = _measured(state.choice.cores, load)
    state.checked = now
    if choice.threads != state.choice.threads:
        logger.warning("other processes now keep %.1f cores busy: PyTorch CPU threads %d -> %d",
                       choice.others_busy, state.choice.threads, choice.threads)
        state.torch.set_num_threads(choice.threads)
    state.choice = choice
