"""A rate-limited progress logger for long runs (no tqdm on the device; Python 3.6)."""

import logging
import time
from typing import Optional


class Progress(object):
    """Logs ``done/total``, items per second and the ETA at most every ``interval`` seconds.

    Args:
        total: Items expected (None when unknown).
        logger: Where to log (INFO).
        label: What is counted, e.g. ``"images"``.
        interval: Seconds between two log lines.
    """

    def __init__(self, total: Optional[int], logger: logging.Logger, label: str = "items",
                 interval: float = 5.0):
        self.total = total
        self.done = 0
        self.logger = logger
        self.label = label
        self.interval = interval
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
            self.logger.info("%s", self.line())

    def line(self) -> str:
        """``"1200/10000 images, 85.3 images/s, ETA 1m43s"``."""
        rate = self.rate
        text = "{}{} {}, {:.1f} {}/s".format(
            self.done, "/{}".format(self.total) if self.total is not None else "", self.label,
            rate, self.label)
        if self.total is not None and rate > 0:
            left = max(self.total - self.done, 0) / rate
            text += ", ETA {}m{:02d}s".format(int(left // 60), int(left % 60))
        return text
