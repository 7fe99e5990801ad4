"""What cvnet-bench and the side-by-side measurement scripts share: batch sizes on the command
line, the options of interleaved rounds, and the line that says where and how a table was
measured (:mod:`cvnet.benchmarks.cpu_paths`, :mod:`cvnet.benchmarks.channel_reductions`,
:mod:`cvnet.benchmarks.ort_profile`).
Device-side: Python 3.6.
"""

import argparse
from typing import Any, List, Optional, Sequence

from cvnet.core.cli import add_threads
from cvnet.core.cpu import load_average
from cvnet.engines.machine import cpu_model


def batch_sizes(text: str) -> List[int]:
    """``"1,8,32"`` -> [1, 8, 32] (sorted, unique): a ``--batch`` value of sizes to time."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected batch sizes like 1,8,32, got {!r}".format(text))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be positive integers, got {!r}".format(
            text))
    return sorted(set(values))


def add_batch_option(parser: argparse.ArgumentParser) -> None:
    """``--batch 1,8``: the batch sizes a script measures."""
    parser.add_argument("--batch", type=batch_sizes, default=[1, 8], metavar="1,8",
                        help="batch sizes, comma-separated")


def add_round_options(parser: argparse.ArgumentParser, *, min_time: float, what: str) -> None:
    """``--batch 1,8``, ``--rounds N``, ``--min-time S`` and ``--threads N`` of a script that
    times several things in interleaved rounds (``what``: what one timing covers)."""
    add_batch_option(parser)
    parser.add_argument("--rounds", type=int, default=5, metavar="N",
                        help="interleaved rounds; the table gives the median")
    parser.add_argument("--min-time", type=float, default=min_time, metavar="S",
                        help="seconds {} is timed per round".format(what))
    add_threads(parser, help="CPU threads of every runtime (default: physical cores)")


def machine_line(threads: int, load_before: Optional[Sequence[Any]], method: str) -> str:
    """Where and how a table was measured: CPU, threads, load before and after (now), and
    ``method`` (e.g. ``"5 profiled runs"``)."""
    return "CPU: {}; threads: {}; load average before/after: {} / {}; {}".format(
        cpu_model(), threads, load_before, load_average(), method)


def header(threads: int, load_before: Optional[Sequence[Any]], rounds: int,
           min_time: float) -> str:
    """:func:`machine_line` of a table measured in interleaved rounds."""
    return machine_line(threads, load_before,
                        "median of {} rounds of {} s".format(rounds, min_time))
