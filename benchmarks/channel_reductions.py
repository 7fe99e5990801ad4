"""The channel mean and max of CVNet's collaboration module in every form tried, side by side.

``python3 -m cvnet.benchmarks.channel_reductions --threads 1``

Each form is a small ONNX graph over the shapes the paper's CVNet reduces at 256x256, (N, 256,
64, 64) and (N, 512, 32, 32). As in the model, every form reads the output of a 1x1 convolution
(an exact identity), which ONNX Runtime computes in its NCHWc layout: where a form needs plain
NCHW, ONNX Runtime reorders, and that is timed too (the row "the 1x1 convolution alone" is the
common part). Timed in ONNX Runtime and in OpenVINO FP32 (where installed) with interleaved rounds
(median of the rounds), and compared with numpy's mean / max on the same random input (max abs
difference). This is how ``cvnet-export --optimize-for onnxruntime`` chose its forms
(docs/cpu.md). Needs onnx and onnxruntime (host or device; imported when run); Python 3.6.
"""

import argparse
import logging
import statistics
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from cvnet.benchmarks.rounds import add_round_options, header
from cvnet.benchmarks.timing import time_calls
from cvnet.core.cli import EXIT_OK, ArgumentParser, add_verbose, doc_summary, setup_logging
from cvnet.core.cpu import load_average, physical_cores
from cvnet.engines.deps import require
from cvnet.engines.ort_runner import session_options

logger = logging.getLogger(__name__)

#: (channels, height, width) of the reductions of the paper's CVNet at 256x256.
SHAPES = ((256, 64, 64), (512, 32, 32))


def _graph(onnx: Any, nodes: List[Any], constants: Dict[str, np.ndarray],
           shape: Tuple[int, int, int]) -> bytes:
    """An opset-13 graph from input ``images`` (N, C, H, W) through an identity 1x1 convolution
    (its output ``x``, which the form's ``nodes`` read) to output ``y``."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    channels, height, width = shape
    identity = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    constants = dict(constants, identity=identity)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "identity"], ["x"])] + nodes, "reduction",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT,
                                       ["n", channels, height, width])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def forms(onnx: Any, shape: Tuple[int, int, int]) -> Dict[str, Tuple[str, bytes]]:
    """name -> (``"mean"`` or ``"max"``, graph bytes) of every form tried."""
    node = onnx.helper.make_node
    channels, height, width = shape
    flat = np.array([0, 1, channels, height * width], np.int64)
    back = np.array([0, 1, height, width], np.int64)
    found = {
        "ReduceMean (as exported)": ("mean", [node("ReduceMean", ["x"], ["y"], axes=[1])], {}),
        "Conv 1x1, weight 1/C": ("mean", [node("Conv", ["x", "w"], ["y"])],
                                 {"w": np.full((1, channels, 1, 1), 1.0 / channels, np.float32)}),
        "ReduceSum x 1/C": ("mean", [node("ReduceSum", ["x", "a"], ["s"]),
                                     node("Mul", ["s", "k"], ["y"])],
                            {"a": np.array([1], np.int64),
                             "k": np.array(1.0 / channels, np.float32)}),
        "MatMul, row of 1/C": ("mean", [node("Reshape", ["x", "s"], ["r"]),
                                        node("MatMul", ["k", "r"], ["p"]),
                                        node("Reshape", ["p", "b"], ["y"])],
                               {"s": np.array([0, channels, height * width], np.int64),
                                "k": np.full((1, channels), 1.0 / channels, np.float32),
                                "b": back}),
        "AveragePool (C, 1) on a reshape": ("mean", [
            node("Reshape", ["x", "s"], ["r"]),
            node("AveragePool", ["r"], ["p"], kernel_shape=[channels, 1]),
            node("Reshape", ["p", "b"], ["y"])], {"s": flat, "b": back}),
        "ReduceMax (as exported)": ("max", [node("ReduceMax", ["x"], ["y"], axes=[1])], {}),
        "MaxPool (C, 1) on a reshape": ("max", [
            node("Reshape", ["x", "s"], ["r"]),
            node("MaxPool", ["r"], ["p"], kernel_shape=[channels, 1]),
            node("Reshape", ["p", "b"], ["y"])], {"s": flat, "b": back}),
        "Transpose + last-axis ReduceMax": ("max", [
            node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
            node("ReduceMax", ["t"], ["m"], axes=[3], keepdims=0),
            node("Unsqueeze", ["m", "a"], ["y"])], {"a": np.array([1], np.int64)}),
    }
    nodes, constants, current, width_now, level = [], {}, "x", channels, 0
    while width_now > 1:  # channels are powers of two here
        half = width_now // 2
        constants["s{}".format(level)] = np.array([half, half], np.int64)
        nodes += [node("Split", [current, "s{}".format(level)],
                       ["a{}".format(level), "b{}".format(level)], axis=1),
                  node("Max", ["a{}".format(level), "b{}".format(level)],
                       ["y" if half == 1 else "m{}".format(level)])]
        current, width_now, level = "m{}".format(level), half, level + 1
    found["halving tree: Split + Max"] = ("max", nodes, constants)
    rows = {"t": np.array([-1, channels], np.int64), "b": np.array([-1, 1, height, width],
                                                                    np.int64)}
    for kind, op in (("mean", "ReduceMean"), ("max", "ReduceMax")):
        found["channels-last rows: Transpose, Reshape, last-axis {} (**chosen**)".format(op)] = (
            kind, [node("Transpose", ["x"], ["l"], perm=[0, 2, 3, 1]),
                   node("Reshape", ["l", "t"], ["r"]),
                   node(op, ["r"], ["m"], axes=[1], keepdims=1),
                   node("Reshape", ["m", "b"], ["y"])], rows)
    found["the 1x1 convolution alone (in every form)"] = ("conv", [node("Identity", ["x"], ["y"])],
                                                          {})
    return {name: (kind, _graph(onnx, nodes, consts, shape))
            for name, (kind, nodes, consts) in found.items()}


def runtimes(threads: int) -> Dict[str, Callable[[bytes], Callable[[np.ndarray], np.ndarray]]]:
    """runtime name -> graph bytes -> a function running it on one input."""
    ort = require("onnxruntime", "the channel-reduction benchmark")
    options = session_options(ort, threads)  # as cvnet's runner: threads wait, not spin
    options.inter_op_num_threads = 1

    def onnxruntime(graph: bytes) -> Callable[[np.ndarray], np.ndarray]:
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"images": x})[0]

    found = {"onnxruntime": onnxruntime}
    try:
        from cvnet.engines.ov_runner import compile_config, openvino_core

        core = openvino_core()
    except Exception as err:  # not installed: ONNX Runtime only
        logger.warning("OpenVINO left out: %s", err)
        return found

    def openvino(graph: bytes) -> Callable[[np.ndarray], np.ndarray]:
        compiled = core.compile_model(core.read_model(graph), "CPU",
                                      compile_config("fp32", threads))
        request = compiled.create_infer_request()
        return lambda x: np.array(request.infer({0: x})[compiled.output(0)])

    found["openvino fp32"] = openvino
    return found


def measure(batches: Sequence[int], rounds: int, min_time: float, threads: int
            ) -> List[Dict[str, Any]]:
    """One record per (shape, batch, form, runtime): median ms per call, max abs difference."""
    onnx = require("onnx", "the channel-reduction benchmark")
    runners = runtimes(threads)
    records = []
    rng = np.random.RandomState(0)
    for shape in SHAPES:
        graphs = forms(onnx, shape)
        compiled = {(name, runtime): make(graph) for name, (_, graph) in graphs.items()
                    for runtime, make in runners.items()}
        for batch in batches:
            x = rng.randn(batch, *shape).astype(np.float32)
            truth = {"mean": x.mean(axis=1, keepdims=True, dtype=np.float64),
                     "max": x.max(axis=1, keepdims=True), "conv": x}
            times = {key: [] for key in compiled}  # type: Dict[Tuple[str, str], List[float]]
            for _ in range(rounds):
                for key, run in compiled.items():
                    calls = time_calls(lambda: run(x), warmup=1, min_time=min_time, min_runs=3)
                    times[key].append(statistics.mean(calls) * 1e3)
            for (name, runtime), run in compiled.items():
                kind = graphs[name][0]
                records.append({"shape": (batch,) + shape, "form": name, "kind": kind,
                                "runtime": runtime, "ms": statistics.median(times[(name,
                                                                                   runtime)]),
                                "max_abs_diff": float(np.abs(run(x) - truth[kind]).max())})
    return records


def markdown(records: Sequence[Dict[str, Any]]) -> str:
    """The records as one Markdown table per shape: forms down, runtimes across."""
    runtimes_seen = sorted({r["runtime"] for r in records})
    lines = []
    for shape in sorted({r["shape"] for r in records}):
        lines += ["", "Input {}:".format("x".join(str(d) for d in shape)), "",
                  "| form | " + " | ".join("{} ms".format(r) for r in runtimes_seen)
                  + " | max abs diff vs numpy |",
                  "|---|" + "---:|" * (len(runtimes_seen) + 1)]
        for form in dict.fromkeys(r["form"] for r in records if r["shape"] == shape):
            cells = {r["runtime"]: r for r in records if r["shape"] == shape
                     and r["form"] == form}
            lines.append("| {} | {} | {:.1e} |".format(
                form, " | ".join("{:.3f}".format(cells[r]["ms"]) for r in runtimes_seen),
                max(c["max_abs_diff"] for c in cells.values())))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python3 -m cvnet.benchmarks.channel_reductions",
                            description=doc_summary(__doc__))
    add_round_options(parser, min_time=0.2, what="each form in each runtime")
    add_verbose(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    threads = args.threads or physical_cores()
    before = load_average()
    records = measure(args.batch, args.rounds, args.min_time, threads)
    print(header(threads, before, args.rounds, args.min_time) + "\n" + markdown(records))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
