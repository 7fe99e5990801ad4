"""Where ONNX Runtime's time goes: its own profiler, kernel time per operator type, per graph.

``python3 -m cvnet.benchmarks.ort_profile model.onnx model.ort.onnx --batch 1,8 --threads 1``

Each graph runs ``--runs`` times on random input with ONNX Runtime's profiler on
(``enable_profiling``); the table sums the kernel times per operator type (ms per run, i.e. per
batch) and counts the NCHWc reorders in the graph ONNX Runtime optimised it into
(``ReorderOutput`` nodes: activations converted back to plain NCHW). The profiler's own overhead
makes the totals longer than timed runs: compare graphs with each other, and time them with
``cvnet.benchmarks.cpu_paths``. How ``cvnet-export --optimize-for onnxruntime`` was found and
checked (docs/cpu.md). Needs onnx and onnxruntime; Python 3.6.
"""

import collections
import json
import logging
import os
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from cvnet.benchmarks.rounds import add_batch_option, machine_line
from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, ArgumentParser, add_threads, add_verbose,
                            doc_summary, setup_logging)
from cvnet.core.errors import CVNetError
from cvnet.core.cpu import load_average, physical_cores
from cvnet.engines.deps import require
from cvnet.engines.ort_runner import load_error, session_options

logger = logging.getLogger(__name__)

#: Operator types listed on their own; the rest are summed into one row.
TOP = 12


def _input(session: Any, batch: int) -> Dict[str, np.ndarray]:
    """Random input for every graph input, the batch (first, symbolic) dim set to ``batch``."""
    feeds = {}
    rng = np.random.RandomState(0)
    for arg in session.get_inputs():
        shape = [batch if i == 0 and not isinstance(d, int) else d
                 for i, d in enumerate(arg.shape)]
        if "uint8" in arg.type:
            feeds[arg.name] = rng.randint(0, 256, size=shape).astype(np.uint8)
        else:
            feeds[arg.name] = rng.rand(*shape).astype(np.float32)
    return feeds


def profile(path: str, batch: int, runs: int, threads: int) -> Tuple[Dict[str, float], int]:
    """Kernel ms per run by operator type, and the ReorderOutput nodes of the optimised graph."""
    ort = require("onnxruntime", "the ONNX Runtime profile")
    onnx = require("onnx", "the ONNX Runtime profile")
    with tempfile.TemporaryDirectory() as folder:
        options = session_options(ort, threads)
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's pybind errors share no useful base class
            raise load_error(path, err) from err
        feeds = _input(session, batch)
        for _ in range(runs + 1):  # the first is a warm-up, left out of the sums
            session.run(None, feeds)
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
        optimized = onnx.load(options.optimized_model_filepath)
    times = _kernel_times(events, skip_runs=1)
    reorders = sum(node.op_type == "ReorderOutput" for node in optimized.graph.node)
    return {op: ms / runs for op, ms in times.items()}, reorders


def _kernel_times(events: List[Dict[str, Any]], skip_runs: int) -> Dict[str, float]:
    """ms per operator type over the profiled runs after the first ``skip_runs``."""
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    begin = starts[skip_runs] if len(starts) > skip_runs else 0
    totals = collections.Counter()  # type: Dict[str, float]
    for event in events:
        if (event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
                and event["ts"] >= begin):
            totals[event["args"]["op_name"]] += event["dur"] / 1000.0
    return dict(totals)


def markdown(results: Dict[Tuple[str, int], Tuple[Dict[str, float], int]]) -> str:
    """Operator types down, (graph, batch) across; the largest first, the rest summed."""
    columns = list(results)
    totals = collections.Counter()  # type: Dict[str, float]
    for times, _ in results.values():
        totals.update(times)
    ops = [op for op, _ in totals.most_common(TOP)]
    lines = ["| operator (ms per run) | " + " | ".join(
        "{}, b{}".format(os.path.basename(path), batch) for path, batch in columns) + " |",
        "|---|" + "---:|" * len(columns)]
    for op in ops:
        lines.append("| `{}` | ".format(op) + " | ".join(
            "{:.2f}".format(results[c][0].get(op, 0.0)) for c in columns) + " |")
    lines.append("| everything else | " + " | ".join(
        "{:.2f}".format(sum(v for k, v in results[c][0].items() if k not in ops))
        for c in columns) + " |")
    lines.append("| total | " + " | ".join(
        "{:.2f}".format(sum(results[c][0].values())) for c in columns) + " |")
    lines.append("| `ReorderOutput` nodes (NCHWc -> NCHW) | " + " | ".join(
        str(results[c][1]) for c in columns) + " |")
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python3 -m cvnet.benchmarks.ort_profile",
                            description=doc_summary(__doc__))
    parser.add_argument("graphs", nargs="+", metavar="MODEL.onnx", help=".onnx files to profile")
    add_batch_option(parser)
    parser.add_argument("--runs", type=int, default=5, metavar="N",
                        help="profiled runs per graph and batch size, after one warm-up")
    add_threads(parser, help="ONNX Runtime's intra-op threads (default: physical cores)")
    add_verbose(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    threads = args.threads or physical_cores()
    before = load_average()
    try:
        results = {(path, batch): profile(path, batch, args.runs, threads)
                   for batch in args.batch for path in args.graphs}
    except CVNetError as err:
        logger.error("%s", err)
        return EXIT_ERROR
    print(machine_line(threads, before, "{} profiled runs".format(args.runs)))
    print(markdown(results))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
