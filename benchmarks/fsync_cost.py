"""What durable commits cost cvnet-embed: images/s with and without the fsyncs, side by side.

Writes ``--images`` synthetic crops (JPEG) once, then runs the real extraction
(:func:`cvnet.jetson.embed.extract`) ``--repeats`` times in each of three modes, interleaved so that
the machine's load falls on all of them alike, each into a fresh output folder on the same file
system. Prints one JSON object: the median images/s of each mode, the ratios, the fsyncs one
run makes and the share of the run's time spent inside them (a figure the CPU load of a shared
machine disturbs far less than the images/s do) (Python 3.6, no torch)::

    python3 -m cvnet.benchmarks.fsync_cost --engine tests/fixtures/tiny/cvnet_tiny.onnx \
        --images 2000

Modes (``os.fsync`` replaced for the run, and the store index's SQLite ``synchronous``):

- ``none``: no fsync at all (atomic renames only; SQLite ``OFF``; not durable);
- ``files``: files only, what cvnet did before it fsynced folders (a rename can be lost;
  SQLite ``FULL``, which does not sync the folder after its journal is deleted);
- ``durable``: files and folders, what cvnet does (:mod:`cvnet.core.fileio`; SQLite ``EXTRA``).

The fsyncs counted and timed are cvnet's own (the ``.npy`` chunks, ``meta.json``, the new
index file, folders); SQLite's, inside each chunk's index transaction, happen in C and show
only in the images/s.

The cost depends on the storage (an SD card or eMMC on a Nano, an SSD here): measure it where
the embeddings are written.
"""

import argparse
import json
import logging
import os
import shutil
import stat
import statistics
import sys
import tempfile
import time
from typing import List, Optional

from cvnet.benchmarks.embed_soak import add_extraction_arguments, write_images
from cvnet.core.cli import ArgumentParser, setup_logging
from cvnet.jetson import store_index

logger = logging.getLogger(__name__)

MODES = ("none", "files", "durable")


class FsyncMode(object):
    """Replaces ``os.fsync`` for one run; counts the calls that reach the disk and their time."""

    def __init__(self, mode: str):
        self.mode = mode
        self.calls = 0
        self.seconds = 0.0
        self._real = os.fsync  # type: Callable[[int], None]

    def _fsync(self, fd: int) -> None:
        if self.mode == "none" or (self.mode == "files" and stat.S_ISDIR(os.fstat(fd).st_mode)):
            return
        self.calls += 1
        started = time.perf_counter()
        self._real(fd)
        self.seconds += time.perf_counter() - started

    def __enter__(self) -> "FsyncMode":
        os.fsync = self._fsync
        self._synchronous = store_index.SYNCHRONOUS
        store_index.SYNCHRONOUS = {"none": "OFF", "files": "FULL", "durable": "EXTRA"}[self.mode]
        return self

    def __exit__(self, *exc_info) -> None:
        os.fsync = self._real
        store_index.SYNCHRONOUS = self._synchronous


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python3 -m cvnet.benchmarks.fsync_cost",
                                     description=__doc__.split("\n\n")[0])
    add_extraction_arguments(parser, images=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=True)
    from cvnet.engines import open_engine
    from cvnet.jetson.embed import extract

    scratch = args.workdir or tempfile.mkdtemp(prefix="cvnet-fsync-")
    images_dir = os.path.join(scratch, "images")
    rates = {mode: [] for mode in MODES}  # type: Dict[str, List[float]]
    calls = {}  # type: Dict[str, int]
    share = {mode: [] for mode in MODES}  # type: Dict[str, List[float]]
    spent = {mode: [] for mode in MODES}  # type: Dict[str, List[float]]
    try:
        if not os.path.isdir(images_dir):
            os.makedirs(images_dir)
            write_images(images_dir, args.images, args.size)
        options = {"threads": args.threads} if args.threads else {}
        with open_engine(args.engine, **options) as runner:
            warmup = os.path.join(scratch, "warmup")
            extract(runner, images_dir, warmup, batch=args.batch_size, chunk_size=args.chunk_size,
                    log_interval=1e9)
            shutil.rmtree(warmup)
            for repeat in range(args.repeats):
                for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                    out = os.path.join(scratch, "out-{}-{}".format(mode, repeat))
                    with FsyncMode(mode) as fsyncs:
                        started = time.perf_counter()
                        summary = extract(runner, images_dir, out, batch=args.batch_size,
                                          chunk_size=args.chunk_size, log_interval=1e9)
                        seconds = time.perf_counter() - started
                    rates[mode].append((summary.ok + summary.failed) / seconds)
                    calls[mode] = fsyncs.calls
                    share[mode].append(fsyncs.seconds / seconds)
                    spent[mode].append(fsyncs.seconds)
                    shutil.rmtree(out)
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    median = {mode: statistics.median(values) for mode, values in rates.items()}
    result = {
        "engine": os.path.basename(args.engine), "images": args.images,
        "chunk_size": args.chunk_size, "batch": args.batch_size, "repeats": args.repeats,
        "images_per_s_median": {mode: round(value, 1) for mode, value in median.items()},
        "images_per_s_runs": {mode: [round(v, 1) for v in values]
                              for mode, values in rates.items()},
        "durable_vs_none": round(median["durable"] / median["none"], 3),
        "durable_vs_files": round(median["durable"] / median["files"], 3),
        "fsyncs_per_run": calls,
        "fsync_share_of_run_max": {mode: round(max(values), 4) for mode, values in share.items()},
        "fsync_ms_per_call": {mode: round(1000 * statistics.median(spent[mode]) / calls[mode], 3)
                              for mode in MODES if calls.get(mode)},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
