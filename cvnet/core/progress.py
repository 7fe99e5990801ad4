"""Progress of long runs: plain, rate-limited log lines, or tqdm's bar on a terminal.

A bar redraws itself with carriage returns, which a log file or a pipe keeps as ``\\r``
fragments; so :func:`progress_bar` draws tqdm's bar only when its stream is a terminal (and tqdm
is installed: the device has none) and otherwise returns a :class:`Progress` that logs one
plain line every ``interval`` seconds. Device-side: Python 3.6, standard library only.
"""

import logging
import sys
import time
from typing import Any, Optional, TextIO


class Progress(object):
    """Logs ``done/total``, items per second and the ETA at most every ``interval`` seconds.

    Has the part of tqdm's interface the training loops use (``update``, ``set_postfix``,
    ``close``), so either can stand in for the other.

    Args:
        total: Items expected (None when unknown).
        logger: Where to log (INFO).
        label: What is counted, e.g. ``"images"``.
        interval: Seconds between two log lines.
        desc: Prefix of every line, e.g. ``"epoch 3/30"``.
        enabled: False counts without logging (e.g. on the other ranks of a distributed run).
    """

    def __init__(self, total: Optional[int], logger: logging.Logger, label: str = "items",
                 interval: float = 5.0, desc: str = "", enabled: bool = True):
        self.total = total
        self.done = 0
        self.logger = logger
        self.label = label
        self.interval = interval
        self.desc = desc
        self.enabled = enabled
        self.postfix = {}  # type: dict
        self.started = time.perf_counter()
        self._last = self.started

    @property
    def rate(self) -> float:
        """Items per second since the start."""
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, count: int = 1) -> None:
        """Counts ``count`` more items; logs when ``interval`` has passed."""
        self.done += count
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            if self.enabled:
                self.logger.info("%s", self.line())

    def set_postfix(self, **fields: Any) -> None:
        """Values shown at the end of the next lines, e.g. ``loss="1.234"``."""
        self.postfix = fields

    def close(self) -> None:
        """Nothing to flush: every line is logged whole (tqdm's ``close``)."""

    def line(self) -> str:
        """``"epoch 3/30: 1200/10000 images, 85.3 images/s, ETA 1m43s, loss 1.234"``."""
        rate = self.rate
        text = "{}{}{} {}, {:.1f} {}/s".format(
            self.desc + ": " if self.desc else "", self.done,
            "/{}".format(self.total) if self.total is not None else "", self.label, rate,
            self.label)
        if self.total is not None and rate > 0:
            left = max(self.total - self.done, 0) / rate
            text += ", ETA {}m{:02d}s".format(int(left // 60), int(left % 60))
        for name, value in self.postfix.items():
            text += ", {} {}".format(name, value)
        return text


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (not a file, pipe or captured stream)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(total: Optional[int], desc: str, logger: logging.Logger, *,
                 label: str = "steps", interval: float = 30.0, enabled: bool = True,
                 stream: Optional[TextIO] = None) -> Any:
    """tqdm's bar on a terminal; a :class:`Progress` logging plain lines anywhere else.

    Args:
        total: Items expected.
        desc: What runs, e.g. ``"epoch 3/30"``.
        logger: Where the plain lines go (INFO).
        label: What is counted.
        interval: Seconds between two plain lines.
        enabled: False shows nothing (e.g. ranks other than 0).
        stream: Where a bar would be drawn; standard error by default.

    Returns:
        An object with ``update(n)``, ``set_postfix(**fields)`` and ``close()``.
    """
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        try:
            from tqdm import tqdm  # host only; the device logs lines
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=stream)
    return Progress(total, logger, label, interval, desc=desc, enabled=enabled)
