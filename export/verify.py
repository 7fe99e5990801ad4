"""Parity of an exported graph with PyTorch: does ONNX Runtime compute the same embeddings?

The same images go through the shared preprocessing (:func:`cvnet.core.preprocess.preprocess_batch`
for PyTorch and float graphs, :func:`cvnet.core.preprocess.resize_rgb` for graphs with preprocessing
inside) into the FP32 PyTorch model and into ONNX Runtime, at batch 1 and at a larger batch.
Figures per batch size, images and thresholds are :mod:`cvnet.core.parity`'s, which the engine
builder uses too: per-embedding cosine similarity (min, mean), max absolute difference, and
retrieval agreement (the share of queries whose top-1 and top-5 neighbours among the other
images are the same in both).

With ``--verify-backend openvino`` the same comparison runs on OpenVINO at each precision it
computes on this CPU (:func:`verify_openvino`: fp32, bf16 where the CPU has it, and whatever
OpenVINO's ``auto`` computes, f16 on ARM builds); its verdicts go into the sidecar's
``verification.runtime_checks``, which the OpenVINO runner reads before it uses any precision but
fp32 (:mod:`cvnet.engines.ov_runner`).

FP16 graphs run on ONNX Runtime's CPU provider with graph optimisations off: the CPU provider
has no FP16 kernels for most operators and inserts Casts around them, so every operator
computes in FP32 but its output is rounded to FP16, as an FP16 engine stores activations. With
optimisations on, ORT would remove those Cast pairs and hide the activation rounding. What this
does not reproduce is FP16 arithmetic inside an operator; the engine builder measures that on
the GPU.
"""

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from cvnet.core.parity import (MIN_COSINE, ParityFigures, parity_figures, passed,
                               runtime_check_record)
from cvnet.core.preprocess import PreprocessConfig, preprocess_batch, resize_rgb

logger = logging.getLogger(__name__)

#: The "larger batch" verification runs at (or the static batch, or the range's maximum).
LARGER_BATCH = 8


@dataclass
class VerificationReport:
    """The outcome of :func:`verify_onnx`.

    Attributes:
        passed: Every batch size reached ``min_cosine``.
        min_cosine: The threshold on the smallest cosine similarity.
        reference: What the graph was compared with.
        backend: What ran the graph.
        input_path: ``"float path"`` or ``"in graph"`` (uint8/float32 pixels into the graph).
        cases: Figures per batch size.
        seconds: Wall time of the verification.
        runtime_checks: Run-time precisions checked the same way (OpenVINO fp32/bf16/f16), one
            record each (:func:`cvnet.core.parity.runtime_check_record`).
    """

    passed: bool
    min_cosine: float
    reference: str
    backend: str
    input_path: str
    cases: List[ParityFigures] = field(default_factory=list)
    seconds: float = 0.0
    runtime_checks: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as the sidecar's ``verification`` object (each case as an object)."""
        data = asdict(self)
        data["cases"] = [dict([("batch", case.batch)] + [(key, value) for key, value
                                                         in case._asdict().items()
                                                         if key != "batch"])
                         for case in self.cases]
        return data

    def summary(self) -> str:
        """One line per batch size, for logs and error messages."""
        return "; ".join(f"batch {c.batch}: cosine min {c.cosine_min:.7f} mean "
                         f"{c.cosine_mean:.7f}, max |diff| {c.max_abs_diff:.2e}, top-1 "
                         f"{c.top1_agreement:.0%}, top-5 {c.top5_agreement:.0%}"
                         for c in self.cases)

    def table(self) -> str:
        """A Markdown table of the figures."""
        lines = ["| batch | images | cosine min | cosine mean | max abs diff | top-1 agree | "
                 "top-5 agree |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for c in self.cases:
            lines.append(f"| {c.batch} | {c.images} | {c.cosine_min:.7f} | {c.cosine_mean:.7f} | "
                         f"{c.max_abs_diff:.2e} | {c.top1_agreement:.0%} | "
                         f"{c.top5_agreement:.0%} |")
        return "\n".join(lines)


def _run_in_batches(run: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray,
                    batch: int) -> np.ndarray:
    """Runs ``run`` on chunks of exactly ``batch`` rows (the last padded by repetition)."""
    outputs = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start:start + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        outputs.append(np.asarray(run(chunk))[:real])
    return np.concatenate(outputs)


def verification_batches(*, static_batch: Optional[int], batch_range: Sequence[int]) -> List[int]:
    """Batch sizes to verify at: the static batch, or the range's minimum and a larger one."""
    if static_batch is not None:
        return [static_batch]
    low, high = batch_range
    larger = min(max(LARGER_BATCH, low), high)
    return sorted({low, larger})


def ort_session(onnx_bytes: bytes, *, fp16: bool = False):
    """An ONNX Runtime CPU session; FP16 graphs without graph optimisations (module docstring)."""
    options = ort.SessionOptions()
    if fp16:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


#: What every check compares with.
REFERENCE = "PyTorch {} FP32, eval mode, shared preprocess_batch"


def compare_with_torch(run_graph: Callable[[np.ndarray], np.ndarray], model: nn.Module,
                       images: Sequence[np.ndarray], *, config: PreprocessConfig,
                       batches: Sequence[int], preprocess_in_graph: bool = False,
                       input_dtype: str = "float32",
                       references: Optional[Dict[int, np.ndarray]] = None) -> List[ParityFigures]:
    """The FP32 model in PyTorch and a converted graph (``run_graph``) on the same images.

    Args:
        run_graph: One batch of graph input -> (N, D) embeddings.
        model: The FP32 PyTorch model, eval mode, taking ``(N, 3, H, W)`` normalised float32.
        images: BGR uint8 images of any size.
        config: Input size and mean/std of the shared preprocessing.
        batches: Batch sizes to run the graph at (each over all images).
        preprocess_in_graph: The graph takes ``(N, H, W, 3)`` RGB pixels (``resize_rgb``).
        input_dtype: With ``preprocess_in_graph``: ``"uint8"`` or ``"float32"`` pixels.
        references: batch size -> (N, D) PyTorch embeddings of these ``images`` by this
            ``model`` and ``config``, shared by the checks of one export: those missing are
            computed here and added, so PyTorch runs once per batch size however many graphs
            and precisions are checked.

    Returns:
        Figures per batch size.
    """
    float_inputs = preprocess_batch(list(images), config)  # (N, 3, H, W) float32
    if preprocess_in_graph:
        size = (config.height, config.width)
        graph_inputs = np.stack([resize_rgb(image, size) for image in images]).astype(input_dtype)
    else:
        graph_inputs = float_inputs

    def run_torch(chunk: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(chunk)).numpy()

    references = {} if references is None else references
    cases = []
    for batch in batches:
        if batch not in references:
            references[batch] = _run_in_batches(run_torch, float_inputs, batch)
        candidate = _run_in_batches(run_graph, graph_inputs, batch)
        cases.append(parity_figures(references[batch], candidate, batch=batch))
    return cases


def openvino_precisions(onnx_bytes: bytes) -> List[str]:
    """The precision hints to check OpenVINO at on this CPU: fp32, bf16 where the CPU has it,
    and ``auto`` where OpenVINO's own choice for this graph is something else (f16 on ARM
    builds), so that every precision a runner may compute has a verdict.

    Raises:
        MissingDependencyError: openvino is not installed (``pip install cvnet[openvino]``).
    """
    from cvnet.engines.ov_runner import (compile_config, cpu_supports_bf16, openvino_core,
                                         precision_name)

    core = openvino_core("--verify-backend openvino")
    hints = ["fp32", "bf16"] if cpu_supports_bf16(core) else ["fp32"]
    compiled = core.compile_model(core.read_model(onnx_bytes), "CPU",
                                  compile_config("auto", None))
    if precision_name(compiled.get_property("INFERENCE_PRECISION_HINT")) not in hints:
        hints.append("auto")
    return hints


def verify_openvino(onnx_bytes: bytes, model: nn.Module, images: Sequence[np.ndarray], *,
                    precision: str, config: PreprocessConfig, batches: Sequence[int],
                    preprocess_in_graph: bool = False, input_dtype: str = "float32",
                    references: Optional[Dict[int, np.ndarray]] = None) -> Dict[str, Any]:
    """Runs the graph in OpenVINO at ``precision`` and the FP32 model in PyTorch on the same
    images; returns the sidecar record of the verdict.

    Args:
        onnx_bytes: The serialised graph.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (OpenVINO's INFERENCE_PRECISION_HINT;
            the record names the precision it computed).
        Others: As :func:`compare_with_torch`.

    Returns:
        :func:`cvnet.core.parity.runtime_check_record`'s record (``passed``: every batch size
        reaches the precision's thresholds, :func:`cvnet.core.parity.runtime_passed`).

    Raises:
        MissingDependencyError: openvino is not installed.
    """
    from cvnet.engines.machine import cpu_model
    from cvnet.engines.ov_runner import (compile_config, openvino_core, openvino_version,
                                         precision_name)

    core = openvino_core("--verify-backend openvino")
    compiled = core.compile_model(core.read_model(onnx_bytes), "CPU",
                                  compile_config(precision, None))
    computed = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    request = compiled.create_infer_request()

    def run_graph(chunk: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: chunk})[compiled.output(0)], copy=True)

    cases = compare_with_torch(run_graph, model, images, config=config, batches=batches,
                               preprocess_in_graph=preprocess_in_graph, input_dtype=input_dtype,
                               references=references)
    record = runtime_check_record("openvino", computed, cases,
                                  reference=REFERENCE.format(torch.__version__),
                                  backend_version=openvino_version(),
                                  device="CPU {}".format(cpu_model() or "?"))
    logger.info("OpenVINO %s: %s", computed, "passed" if record["passed"] else "FAILED")
    return record


def verify_onnx(onnx_bytes: bytes, model: nn.Module, images: Sequence[np.ndarray], *,
                config: PreprocessConfig, batches: Sequence[int], precision: str = "fp32",
                preprocess_in_graph: bool = False, input_dtype: str = "float32",
                input_name: str = "images", output_name: str = "embeddings",
                references: Optional[Dict[int, np.ndarray]] = None) -> VerificationReport:
    """Runs the graph in ONNX Runtime and the FP32 model in PyTorch on the same images.

    Args:
        onnx_bytes: The serialised graph.
        model: The FP32 PyTorch model, eval mode, taking ``(N, 3, H, W)`` normalised float32.
        images: BGR uint8 images of any size (:func:`verification_images`).
        config: Input size and mean/std of the shared preprocessing.
        batches: Batch sizes to run the graph at (each over all images).
        precision: The graph's precision, ``"fp32"`` or ``"fp16"`` (FP16-typed: run without
            ORT graph optimisations); it sets the pass threshold on the smallest per-embedding
            cosine similarity (:data:`cvnet.core.parity.MIN_COSINE`, the builder's too).
        preprocess_in_graph: The graph takes ``(N, H, W, 3)`` RGB pixels (``resize_rgb``).
        input_dtype: With ``preprocess_in_graph``: ``"uint8"`` or ``"float32"`` pixels.
        input_name: The graph's input name.
        output_name: The graph's output name.
        references: As :func:`compare_with_torch`.

    Returns:
        The report; ``passed`` is False when any batch size falls below the threshold.
    """
    fp16 = precision == "fp16"
    start = time.perf_counter()
    session = ort_session(onnx_bytes, fp16=fp16)

    def run_graph(chunk: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: chunk})[0]

    cases = compare_with_torch(run_graph, model, images, config=config, batches=batches,
                               preprocess_in_graph=preprocess_in_graph, input_dtype=input_dtype,
                               references=references)
    report = VerificationReport(
        passed=all(passed(c, precision) for c in cases), min_cosine=MIN_COSINE[precision],
        reference=REFERENCE.format(torch.__version__),
        backend=(f"onnxruntime {ort.__version__} CPUExecutionProvider"
                 + (", graph optimisations off (FP16 activations rounded per operator)"
                    if fp16 else "")),
        input_path=(f"in graph ({input_dtype} NHWC pixels from resize_rgb)"
                    if preprocess_in_graph else "float path (preprocess_batch)"),
        cases=cases, seconds=round(time.perf_counter() - start, 2))
    logger.info("verification %s: %s", "passed" if report.passed else "FAILED", report.summary())
    return report

