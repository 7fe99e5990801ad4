"""The timing loops: network-only (a preprocessed batch through ``runner.infer``) and
end-to-end (JPEG bytes -> decode -> shared preprocessing -> infer -> L2-normalise).

Both warm up first, then time batches until at least ``min_time`` seconds and ``min_runs``
batches have passed, reading ``time.perf_counter`` only after ``sync()`` (a CUDA synchronise for
PyTorch on a GPU; the TensorRT runner synchronises its stream inside ``infer``). The end-to-end
loop decodes and preprocesses the next batch on a background thread while the current one runs,
as an edge pipeline would, and times the interval between finished batches.
"""

import logging
import queue
import threading
import time
from typing import Callable, List, Optional, Sequence

import cv2
import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.preprocess import ImageDecodeError, decode_image, l2_normalize

logger = logging.getLogger(__name__)

#: Fewest timed batches, however long each takes.
MIN_RUNS = 5


def _no_sync() -> None:
    pass


def time_calls(step: Callable[[], object], *, warmup: int, min_time: float,
               min_runs: int = MIN_RUNS, sync: Optional[Callable[[], None]] = None
               ) -> List[float]:
    """Times ``step()`` repeatedly after ``warmup`` untimed calls.

    Args:
        step: One unit of work (one batch).
        warmup: Untimed calls first.
        min_time: Keep timing until this many seconds have passed in total ...
        min_runs: ... and at least this many calls were timed.
        sync: Called before every clock read (device synchronisation).

    Returns:
        Seconds per timed call.
    """
    sync = sync or _no_sync
    for _ in range(max(0, warmup)):
        step()
    sync()
    times = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_time:
        sync()
        begin = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - begin)
    return times


def time_network(runner, batch: np.ndarray, *, warmup: int, min_time: float,
                 min_runs: int = MIN_RUNS, sync: Optional[Callable[[], None]] = None
                 ) -> List[float]:
    """Seconds per ``runner.infer(batch)`` (network only: copies to and from the device included,
    preprocessing not)."""
    return time_calls(lambda: runner.infer(batch), warmup=warmup, min_time=min_time,
                      min_runs=min_runs, sync=sync)


class _Producer(threading.Thread):
    """Decodes and preprocesses batches of JPEG bytes into a bounded queue until stopped."""

    def __init__(self, runner, jpegs: Sequence[bytes], batch: int, depth: int = 2):
        super(_Producer, self).__init__(name="cvnet-bench-decode", daemon=True)
        self.runner = runner
        self.jpegs = list(jpegs)
        self.batch = batch
        self.queue = queue.Queue(maxsize=depth)  # type: queue.Queue
        self.stop = threading.Event()
        self.skipped = 0

    def run(self) -> None:
        index = 0
        try:
            while not self.stop.is_set():
                images = []
                misses = 0
                while len(images) < self.batch:
                    data = self.jpegs[index % len(self.jpegs)]
                    index += 1
                    try:
                        images.append(decode_image(data))
                    except ImageDecodeError as err:
                        self.skipped += 1
                        misses += 1
                        if self.skipped <= 3:
                            logger.warning("skipping an image that does not decode: %s", err)
                        if misses >= len(self.jpegs):
                            raise ConfigError("none of the {} end-to-end images decodes; give "
                                              "JPEG or PNG bytes".format(len(self.jpegs)))
                self._put(self.runner.prepare(images))
        except BaseException as err:  # handed to the consumer, which re-raises it
            self._put(err)

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def time_end_to_end(runner, jpegs: Sequence[bytes], batch: int, *, warmup: int,
                    min_time: float, min_runs: int = MIN_RUNS,
                    sync: Optional[Callable[[], None]] = None) -> List[float]:
    """Seconds between finished batches of the full pipeline from encoded images.

    A background thread decodes (:func:`cvnet.core.preprocess.decode_image`) and preprocesses
    (``runner.prepare``, the shared path) the next batch while this thread runs ``runner.infer``
    and L2-normalises the output. Images that do not decode are skipped with a warning. OpenCV
    is held to one thread meanwhile, so decoding does not oversubscribe the inference threads.

    Args:
        runner: An active runner.
        jpegs: Encoded images, cycled through.
        batch: Images per batch.
        warmup, min_time, min_runs, sync: As in :func:`time_calls`.

    Returns:
        Seconds per timed batch, each the interval since the previous batch finished.

    Raises:
        ConfigError: No images, or none decodes.
    """
    if not jpegs:
        raise ConfigError("end-to-end timing needs at least one encoded image")
    sync = sync or _no_sync
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the decode thread takes one core; inference keeps the others
    producer = _Producer(runner, jpegs, batch)
    producer.start()

    def step() -> None:
        item = producer.queue.get()
        if isinstance(item, BaseException):
            raise item
        l2_normalize(runner.infer(item))

    try:
        for _ in range(max(0, warmup)):
            step()
        sync()
        times = []
        started = last = time.perf_counter()
        while len(times) < min_runs or last - started < min_time:
            step()
            sync()
            now = time.perf_counter()
            times.append(now - last)
            last = now
    finally:
        producer.stop.set()
        producer.join(timeout=10)
        cv2.setNumThreads(cv_threads)
    return times
