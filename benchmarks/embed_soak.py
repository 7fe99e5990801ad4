"""cvnet-embed soak: pipeline vs network-only throughput, and resident memory over a long run.

Writes ``--images`` synthetic crops (JPEG) to a scratch folder, measures the engine alone on a
preprocessed batch (network-only images/s at ``--batch-size``), then runs the real extraction
(:func:`cvnet.jetson.embed.extract`: decode thread, chunked store) while a thread samples this
process's resident set size. Prints one JSON object: both throughputs and their ratio, and the
RSS after warm-up, at the end and at its peak (Linux ``/proc``; Python 3.6, no torch)::

    python3 -m cvnet.benchmarks.embed_soak --engine tests/fixtures/tiny/cvnet_tiny.onnx \
        --images 10000
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import List, Optional

import cv2

from cvnet.core.cli import (ArgumentParser, add_batch_size, add_engine, add_threads, doc_summary,
                            setup_logging)

logger = logging.getLogger(__name__)


def rss_bytes() -> int:
    """This process's resident set size in bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """Samples :func:`rss_bytes` every ``interval`` seconds into ``samples`` (time, bytes)."""

    def __init__(self, interval: float = 0.25):
        super(RssSampler, self).__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.samples = []  # type: List[Tuple[float, int]]
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter() - start, rss_bytes()))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def write_images(folder: str, count: int, size: int, seed: int = 0) -> None:
    """``count`` synthetic vehicle crops as JPEGs in ``folder`` (100 renders, re-used)."""
    from cvnet.core.synth import sample_images

    renders = sample_images(min(count, 100), seed=seed, size=size)
    for index in range(count):
        cv2.imwrite(os.path.join(folder, "{:06d}.jpg".format(index)), renders[index % 100])


def network_throughput(runner, images, batch: int, seconds: float) -> float:
    """Images/s of the engine alone on one preprocessed batch of ``batch`` crops."""
    prepared = runner.prepare([images[i % len(images)] for i in range(batch)])
    for _ in range(3):
        runner.embed(prepared)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        runner.embed(prepared)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def add_extraction_arguments(parser: argparse.ArgumentParser, images: int) -> None:
    """The options of the extraction benchmarks: the engine, the synthetic crops, the batching
    and the scratch folder (``--images`` defaults to ``images``)."""
    add_engine(parser, required=True, help=".plan or .onnx model")
    parser.add_argument("--images", type=int, default=images,
                        help="synthetic crops to embed (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels")
    add_batch_size(parser, default=8, aliases=("--batch",), help="images per engine call")
    parser.add_argument("--chunk-size", type=int, default=512,
                        help="files per chunk, i.e. per commit (cvnet-embed's default)")
    add_threads(parser, help="ONNX Runtime threads")
    parser.add_argument("--workdir", default=None,
                        help="scratch folder, on the storage to measure (default: a temporary "
                             "one, removed afterwards)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python3 -m cvnet.benchmarks.embed_soak",
                            description=doc_summary(__doc__))
    add_extraction_arguments(parser, images=10000)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from cvnet.core.preprocess import decode_image
    from cvnet.engines import open_engine
    from cvnet.jetson.embed import extract

    scratch = args.workdir or tempfile.mkdtemp(prefix="cvnet-soak-")
    images_dir, out = os.path.join(scratch, "images"), os.path.join(scratch, "out")
    try:
        if not os.path.isdir(images_dir):
            os.makedirs(images_dir)
            write_images(images_dir, args.images, args.size)
        if os.path.isdir(out):
            shutil.rmtree(out)
        options = {"threads": args.threads} if args.threads else {}
        with open_engine(args.engine, **options) as runner:
            crops = [decode_image(os.path.join(images_dir, name))
                     for name in sorted(os.listdir(images_dir))[:16]]
            network = network_throughput(runner, crops, args.batch_size, 10.0)
            sampler = RssSampler()
            sampler.start()
            summary = extract(runner, images_dir, out, batch=args.batch_size,
                              chunk_size=args.chunk_size, log_interval=10.0)
            sampler.stop()
        samples = sampler.samples
        warm = samples[max(1, len(samples) // 10)][1]  # after 10% of the run
        result = {
            "engine": os.path.basename(args.engine), "images": summary.ok + summary.failed,
            "failed": summary.failed, "batch": args.batch_size, "crop_size": args.size,
            "cpu_count": os.cpu_count(),
            "network_images_per_s": round(network, 1),
            "pipeline_images_per_s": round(summary.rate, 1),
            "pipeline_vs_network": round(summary.rate / network, 3),
            "rss_mib_after_10pct": round(warm / 2 ** 20, 1),
            "rss_mib_end": round(samples[-1][1] / 2 ** 20, 1),
            "rss_mib_peak": round(max(s[1] for s in samples) / 2 ** 20, 1),
            "rss_growth_mib_after_warmup": round((samples[-1][1] - warm) / 2 ** 20, 1),
            "rss_samples": len(samples), "seconds": round(summary.seconds, 1),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
