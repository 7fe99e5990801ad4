"""Parity of an exported graph with PyTorch: does ONNX Runtime compute the same embeddings?

The same images go through the shared preprocessing (:func:`cvnet.core.preprocess.preprocess_batch`
for PyTorch and float graphs, :func:`cvnet.core.preprocess.resize_rgb` for graphs with preprocessing
inside) into the FP32 PyTorch model and into ONNX Runtime, at batch 1 and at a larger batch.
Figures per batch size: per-embedding cosine similarity (min, mean), max absolute difference,
and retrieval agreement (the share of queries whose top-1 and top-5 neighbours among the other
images are the same in both).

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
from typing import Callable, List, Optional, Sequence

import cv2
import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

from cvnet.core.preprocess import PreprocessConfig, preprocess_batch, resize_rgb
from cvnet.core.synth import sample_images
from cvnet.export.defaults import DEFAULT_IMAGE_COUNT

logger = logging.getLogger(__name__)

#: An FP32 export fails when any embedding's cosine similarity to PyTorch's is below this.
FP32_MIN_COSINE = 0.9999
#: The same for an FP16-typed export.
FP16_MIN_COSINE = 0.999
#: The "larger batch" verification runs at (or the static batch, or the range's maximum).
LARGER_BATCH = 8


def verification_images(count: int = DEFAULT_IMAGE_COUNT, seed: int = 0) -> List[np.ndarray]:
    """The images every export is verified on: ``count`` BGR uint8 images.

    Half are synthetic vehicle crops in both views (:func:`cvnet.core.synth.sample_images`, 128x128),
    so that the retrieval figures compare images a ReID model is meant for; the rest alternate
    uniform noise with structured images (a colour gradient with random rectangles, ellipses and
    lines), 48 to 320 pixels on each side with varied aspect ratios, so that resizing is
    exercised too.

    Args:
        count: Number of images.
        seed: Seed of the generators; the same seed gives the same images.

    Returns:
        ``count`` arrays of shape (H, W, 3), uint8, BGR.
    """
    vehicles = sample_images(count // 2, seed=seed, size=128)
    rng = np.random.RandomState(seed)
    return vehicles + [_generated_image(rng, noise=i % 2 == 0)
                       for i in range(count - len(vehicles))]


def _generated_image(rng: np.random.RandomState, *, noise: bool) -> np.ndarray:
    """One noise or drawn-shapes image of random size, (H, W, 3) uint8 BGR."""
    height, width = (int(v) for v in rng.randint(48, 321, size=2))
    if noise:
        return rng.randint(0, 256, size=(height, width, 3), dtype=np.uint8)
    start, stop = rng.randint(0, 256, size=3), rng.randint(0, 256, size=3)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    image = np.ascontiguousarray(np.broadcast_to(start + (stop - start) * ramp,
                                                 (height, width, 3)).astype(np.uint8))
    for _ in range(rng.randint(2, 7)):
        colour = tuple(int(c) for c in rng.randint(0, 256, size=3))
        x0, x1 = sorted(int(v) for v in rng.randint(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.randint(0, height, size=2))
        shape = rng.randint(3)
        if shape == 0:
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, -1)
        elif shape == 1:
            axes = (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2))
            cv2.ellipse(image, ((x0 + x1) // 2, (y0 + y1) // 2), axes, 0, 0, 360, colour, -1)
        else:
            cv2.line(image, (x0, y0), (x1, y1), colour, int(rng.randint(1, 6)))
    return image


@dataclass
class ParityFigures:
    """Agreement between reference and exported embeddings at one batch size.

    Attributes:
        batch: Batch size the graph ran at.
        images: Number of embeddings compared.
        cosine_min: Smallest per-embedding cosine similarity.
        cosine_mean: Mean per-embedding cosine similarity.
        max_abs_diff: Largest absolute difference of any embedding component.
        top1_agreement: Share of queries whose nearest other image is the same in both.
        top5_agreement: Share of queries whose 5 nearest other images are the same set in both.
    """

    batch: int
    images: int
    cosine_min: float
    cosine_mean: float
    max_abs_diff: float
    top1_agreement: float
    top5_agreement: float


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
    """

    passed: bool
    min_cosine: float
    reference: str
    backend: str
    input_path: str
    cases: List[ParityFigures] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

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


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return (a * b).sum(axis=1) / norms


def _neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows, nearest first."""
    unit = embeddings.astype(np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-30)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def retrieval_agreement(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """Share of queries whose ``k`` nearest neighbours are the same set in both embeddings.

    Each of the N embeddings is a query against the other N - 1 (leave-one-out gallery).

    Args:
        reference: (N, D) reference embeddings.
        candidate: (N, D) embeddings of the same images from the exported graph.
        k: Neighbours compared; at most N - 1 are used.
    """
    count = reference.shape[0]
    k = min(k, count - 1)
    if k < 1:
        return 1.0
    ref, cand = _neighbours(reference, k), _neighbours(candidate, k)
    same = [set(ref[i]) == set(cand[i]) for i in range(count)]
    return float(np.mean(same))


def parity_figures(reference: np.ndarray, candidate: np.ndarray, *, batch: int) -> ParityFigures:
    """Compares (N, D) reference and candidate embeddings of the same images."""
    if reference.shape != candidate.shape:
        raise ValueError(f"embedding shapes differ: reference {reference.shape}, "
                         f"candidate {candidate.shape}")
    cosine = _cosine(reference, candidate)
    return ParityFigures(
        batch=batch, images=int(reference.shape[0]),
        cosine_min=float(cosine.min()), cosine_mean=float(cosine.mean()),
        max_abs_diff=float(np.abs(reference.astype(np.float64) - candidate).max()),
        top1_agreement=retrieval_agreement(reference, candidate, 1),
        top5_agreement=retrieval_agreement(reference, candidate, 5))


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


def verify_onnx(onnx_bytes: bytes, model: nn.Module, images: Sequence[np.ndarray], *,
                config: PreprocessConfig, batches: Sequence[int], min_cosine: float,
                preprocess_in_graph: bool = False, input_dtype: str = "float32",
                fp16: bool = False, input_name: str = "images",
                output_name: str = "embeddings") -> VerificationReport:
    """Runs the graph in ONNX Runtime and the FP32 model in PyTorch on the same images.

    Args:
        onnx_bytes: The serialised graph.
        model: The FP32 PyTorch model, eval mode, taking ``(N, 3, H, W)`` normalised float32.
        images: BGR uint8 images of any size (:func:`verification_images`).
        config: Input size and mean/std of the shared preprocessing.
        batches: Batch sizes to run the graph at (each over all images).
        min_cosine: Pass threshold for the smallest per-embedding cosine similarity.
        preprocess_in_graph: The graph takes ``(N, H, W, 3)`` RGB pixels (``resize_rgb``).
        input_dtype: With ``preprocess_in_graph``: ``"uint8"`` or ``"float32"`` pixels.
        fp16: The graph is FP16-typed (run without ORT graph optimisations).
        input_name: The graph's input name.
        output_name: The graph's output name.

    Returns:
        The report; ``passed`` is False when any batch size falls below ``min_cosine``.
    """
    start = time.perf_counter()
    session = ort_session(onnx_bytes, fp16=fp16)
    float_inputs = preprocess_batch(list(images), config)  # (N, 3, H, W) float32
    if preprocess_in_graph:
        size = (config.height, config.width)
        graph_inputs = np.stack([resize_rgb(image, size) for image in images]).astype(input_dtype)
    else:
        graph_inputs = float_inputs

    def run_torch(chunk: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(chunk)).numpy()

    def run_graph(chunk: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: chunk})[0]

    cases = []
    for batch in batches:
        reference = _run_in_batches(run_torch, float_inputs, batch)
        candidate = _run_in_batches(run_graph, graph_inputs, batch)
        cases.append(parity_figures(reference, candidate, batch=batch))
    report = VerificationReport(
        passed=all(c.cosine_min >= min_cosine for c in cases), min_cosine=min_cosine,
        reference=f"PyTorch {torch.__version__} FP32, eval mode, shared preprocess_batch",
        backend=(f"onnxruntime {ort.__version__} CPUExecutionProvider"
                 + (", graph optimisations off (FP16 activations rounded per operator)"
                    if fp16 else "")),
        input_path=(f"in graph ({input_dtype} NHWC pixels from resize_rgb)"
                    if preprocess_in_graph else "float path (preprocess_batch)"),
        cases=cases, seconds=round(time.perf_counter() - start, 2))
    logger.info("verification %s: %s", "passed" if report.passed else "FAILED", report.summary())
    return report

