"""Every CPU path of one model side by side: images/s by interleaved rounds, and agreement.

``python3 -m cvnet.benchmarks.cpu_paths cvnet.onnx cvnet.ort.onnx --reference model.pt``

Each round times every path at every batch size in turn (so that a busy neighbour slows all of
them alike), and the report gives the median over the rounds. The paths, for each ``.onnx`` file
given: cvnet's ONNX Runtime runner; for the first file also cvnet's OpenVINO runner at fp32, at
OpenVINO's own default (``auto``, without the agreement gate: what OpenVINO alone would run) and,
where OpenCV's DNN module reads the graph, OpenCV DNN; with ``--reference``, eager PyTorch on the
checkpoint (host). Beside each: its agreement with the reference (PyTorch FP32 on ``--reference``,
else ONNX Runtime on the first file) on the verification images, as ``max (1 - cosine)`` and top-5
agreement. cvnet-bench answers "which path is fastest here"; this script measures ratios for
docs/results.md. Device-side: Python 3.6, no torch (PyTorch through the host's runner plugin).
"""

import argparse
import json
import logging
import os
import statistics
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import cv2
import numpy as np

from cvnet.benchmarks.agreement import DEFAULT_IMAGES
from cvnet.benchmarks.rounds import add_round_options, header
from cvnet.benchmarks.timing import time_calls
from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_json_out, add_verbose,
                            add_verification, doc_summary, setup_logging)
from cvnet.core.errors import CVNetError
from cvnet.core.fileio import write_text_atomic
from cvnet.core.parity import parity_figures, verification_images
from cvnet.core.synth import sample_images
from cvnet.core.cpu import load_average, physical_cores
from cvnet.engines.machine import cpu_model

logger = logging.getLogger(__name__)


class Path(NamedTuple):
    """One way to run the model: a name, what to time, and how to embed for agreement.

    Attributes:
        name: Shown in the report, e.g. ``"onnxruntime (cvnet.ort.onnx)"``.
        infer: A prepared (N, ...) batch -> its output.
        embed: BGR images -> (N, D) embeddings.
        prepare: BGR images -> the batch ``infer`` takes.
        close: Frees it.
    """

    name: str
    infer: Callable[[np.ndarray], Any]
    embed: Callable[[Sequence[np.ndarray]], np.ndarray]
    prepare: Callable[[Sequence[np.ndarray]], np.ndarray]
    close: Callable[[], None]


def runner_path(name: str, path: str, **options: Any) -> Path:
    """A path through :func:`cvnet.engines.open_engine` (activated here); ``{precision}`` in
    ``name`` becomes the precision the runner computes in."""
    from cvnet.engines import open_engine

    runner = open_engine(path, **options).activate()
    label = name.format(precision=getattr(runner, "precision", None) or "fp32")
    return Path(label, runner.infer, runner.embed, runner.prepare, runner.deactivate)


def opencv_path(path: str, like: Path) -> Optional[Path]:
    """OpenCV DNN on ``path`` (its default CPU backend), or None where it cannot read it."""
    try:
        net = cv2.dnn.readNetFromONNX(path)
    except cv2.error as err:
        logger.warning("OpenCV DNN cannot read %s, left out: %s", path,
                       str(err).strip().splitlines()[-1][:200])
        return None

    def infer(batch: np.ndarray) -> np.ndarray:
        net.setInput(batch)
        return net.forward()

    def embed(images: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([infer(like.prepare([image])) for image in images])

    return Path("opencv-dnn {}".format(cv2.__version__), infer, embed, like.prepare,
                lambda: None)


def open_paths(models: Sequence[str], reference: Optional[str], threads: int,
               opencv: bool, batch_max: int) -> List[Path]:
    """Every path of the report, opened (module docstring)."""
    paths = []
    if reference:
        from cvnet.core.artifact import read_sidecar

        meta = read_sidecar(models[0])  # the checkpoint runs at the export's input size
        paths.append(runner_path("pytorch eager", reference, device="cpu", threads=threads,
                                 cuda_graphs=False, batch_range=(1, batch_max),
                                 input_size=(meta.input_height, meta.input_width)))
    for model in models:
        paths.append(runner_path("onnxruntime ({})".format(os.path.basename(model)), model,
                                 threads=threads, providers=["CPUExecutionProvider"]))
    first = os.path.basename(models[0])
    for precision, label in (("fp32", "fp32 forced"), ("auto", "default: {precision}")):
        try:
            path = runner_path("openvino {} ({})".format(label, first), models[0],
                               backend="openvino", precision=precision, threads=threads,
                               check_agreement=False)
        except CVNetError as err:
            logger.warning("OpenVINO left out: %s", err)
            break
        paths.append(path)
    if opencv:
        cv2.setNumThreads(threads)
        found = opencv_path(models[0], paths[-1])
        if found is not None:
            paths.append(found)
    return paths


def time_path(path: Path, batch: np.ndarray, min_time: float) -> float:
    """Images per second of ``path`` on ``batch``: one warm-up call, then calls for ``min_time``
    seconds (at least 2)."""
    times = time_calls(lambda: path.infer(batch), warmup=1, min_time=min_time, min_runs=2)
    return len(times) * len(batch) / sum(times)


def measure(paths: Sequence[Path], batches: Sequence[int], rounds: int,
            min_time: float) -> Dict[str, Dict[int, List[float]]]:
    """path name -> batch -> images/s of each round (paths interleaved within a round)."""
    images = sample_images(max(batches), seed=0, size=256)
    prepared = {(p.name, b): p.prepare(images[:b]) for p in paths for b in batches}
    speeds = {p.name: {b: [] for b in batches} for p in paths}  # type: Dict[str, Dict[int, list]]
    for number in range(rounds):
        for batch in batches:
            for path in paths:
                speeds[path.name][batch].append(
                    time_path(path, prepared[(path.name, batch)], min_time))
        logger.info("round %d of %d done", number + 1, rounds)
    return speeds


def report_rows(paths: Sequence[Path], speeds: Dict[str, Dict[int, List[float]]],
                count: int) -> List[Dict[str, Any]]:
    """One record per path: median images/s per batch, and agreement with the first path (none
    with fewer than 2 ``count`` images)."""
    images = verification_images(count) if count >= 2 else []
    reference = None  # the first path's embeddings, computed once
    rows = []
    for path in paths:
        figures = None
        if images:
            embeddings = path.embed(images)
            reference = embeddings if reference is None else reference
            figures = parity_figures(reference, embeddings)
        rows.append({"path": path.name,
                     "images_per_s": {str(b): statistics.median(v)
                                      for b, v in speeds[path.name].items()},
                     "max_one_minus_cosine": None if figures is None
                     else max(0.0, 1.0 - figures.cosine_min),
                     "top5_agreement": None if figures is None else figures.top5_agreement})
    return rows


def markdown(rows: Sequence[Dict[str, Any]], batches: Sequence[int], reference: str) -> str:
    """The records as a Markdown table."""
    head = "| path | " + " | ".join("batch {}".format(b) for b in batches)
    head += " | max (1 - cosine) vs {} | top-5 agreement |".format(reference)
    lines = [head, "|---|" + "---:|" * (len(batches) + 2)]
    for row in rows:
        cells = ["{:.1f}".format(row["images_per_s"][str(b)]) for b in batches]
        cosine = row["max_one_minus_cosine"]
        lines.append("| {} | {} | {} | {} |".format(
            row["path"], " | ".join(cells), "-" if cosine is None else "{:.1e}".format(cosine),
            "-" if row["top5_agreement"] is None else "{:.0%}".format(row["top5_agreement"])))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python3 -m cvnet.benchmarks.cpu_paths",
                            description=doc_summary(__doc__))
    parser.add_argument("models", nargs="+", metavar="MODEL.onnx",
                        help=".onnx files of one model (the first also runs OpenVINO and OpenCV)")
    parser.add_argument("--reference", metavar="MODEL.pt",
                        help="the checkpoint: times eager PyTorch and is the agreement reference "
                             "(host); default: ONNX Runtime on the first file")
    add_round_options(parser, min_time=1.0, what="each path at each batch size")
    parser.add_argument("--no-opencv", dest="opencv", action="store_false",
                        help="leave OpenCV DNN out")
    add_verification(parser, default=DEFAULT_IMAGES,
                     images_help="verification images the agreement is measured on",
                     skip_help="no agreement figures")
    add_json_out(parser, help="also write the records as JSON")
    add_verbose(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    threads, batches = args.threads or physical_cores(), args.batch
    paths = []
    try:
        paths = open_paths(args.models, args.reference, threads, args.opencv, max(batches))
        load_before = load_average()
        speeds = measure(paths, batches, args.rounds, args.min_time)
        rows = report_rows(paths, speeds, args.verify_images if args.verify else 0)
    except CVNetError as err:
        logger.error("%s", err)
        return EXIT_ERROR
    finally:
        for path in paths:
            path.close()
    reference = "PyTorch FP32" if args.reference else "ONNX Runtime FP32"
    print(header(threads, load_before, args.rounds, args.min_time) + "\n\n"
          + markdown(rows, batches, reference))
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(
            {"cpu": cpu_model(), "threads": threads, "rounds": args.rounds,
             "min_time": args.min_time, "reference": reference, "rows": rows}, indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
