"""Does each timed path keep the FP32 rankings? Agreement figures beside the speed, and the
fastest CPU path that passes.

Every target of a run embeds the verification images (:func:`cvnet.core.parity.verification_images`,
the export's images) and is compared with its FP32 reference (:attr:`Target.reference`): the
untrained checkpoint in eager PyTorch FP32 on the CPU in a default run, and for a file given with
``--engine`` the checkpoint itself or, for an ``.onnx``, ONNX Runtime FP32 (which the export
verified against PyTorch). The figures are :mod:`cvnet.core.parity`'s: the smallest cosine and
the top-5 retrieval agreement, measured at each timed batch size (a runtime may pick other
kernels per batch); a path keeps the rankings where :func:`cvnet.core.parity.keeps_rankings` says
so: its precision's cosine (FP32 0.9999, FP16 0.999, BF16 0.995) **and** top-5 agreement >= 0.99,
whatever the precision. The reference's own row (the same file on the same runtime) has no
figures: it agrees with itself by construction and is never named fastest. An ``.onnx`` graph
that is not FP32 (an FP16 export) has no FP32 reference here, so it gets no figures.
Device-side: Python 3.6, no torch.
"""

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.errors import CVNetError
from cvnet.core.parity import ParityFigures, keeps_rankings, parity_figures, verification_images

logger = logging.getLogger(__name__)

#: Verification images unless ``--verify-images`` says otherwise (cvnet-export's default).
DEFAULT_IMAGES = 16
#: What a reference is called in the report, by CLI backend.
REFERENCE_NAMES = {"torch-eager": "PyTorch FP32 (eager, CPU)",
                   "onnxruntime": "ONNX Runtime on the FP32 graph (CPU; the export verified it "
                                  "against PyTorch)"}


class Agreement(object):
    """The verification images and the reference embeddings of a run, computed once each.

    Args:
        count: Verification images.
        open_reference: (model file, CLI backend) -> an active-able runner of the FP32
            reference on the CPU (:func:`cvnet.engines.open_engine` with the benchmark's options).
    """

    def __init__(self, count: int, open_reference: Callable[[str, str], Any]):
        self.images = verification_images(count)
        self._open_reference = open_reference
        self._references = {}  # type: Dict[Tuple[str, str], Optional[np.ndarray]]

    def reference(self, key: Tuple[str, str]) -> Optional[np.ndarray]:
        """(N, D) embeddings of the images by the reference ``key`` (computed on first use);
        None, said once as a warning, where the reference cannot run (the timings still count).
        """
        if key not in self._references:
            name = REFERENCE_NAMES.get(key[1], key[1])
            logger.info("agreement reference: %s on %d images", name, len(self.images))
            try:
                with self._open_reference(*key) as runner:
                    self._references[key] = runner.embed(self.images)
            except CVNetError as err:
                logger.warning("agreement not measured: the reference (%s, %s) cannot run: %s",
                               name, key[0], err)
                self._references[key] = None
        return self._references[key]

    def figures(self, reference: Optional[Tuple[str, str]], runner: Any,
                batch: Optional[int] = None) -> Optional[ParityFigures]:
        """An active runner's figures against its reference, its embeddings computed in batches
        of ``batch`` (the last one padded to it; the runner's own batching when None); None
        where it has no reference."""
        expected = self.reference(reference) if reference is not None else None
        if expected is None:
            return None
        if batch is None:
            return parity_figures(expected, runner.embed(self.images))
        return parity_figures(expected, embed_at_batch(runner, self.images, batch), batch=batch)


def embed_at_batch(runner: Any, images: Sequence[np.ndarray], batch: int) -> np.ndarray:
    """(N, D) embeddings of ``images`` by an active runner, every call a batch of ``batch``
    (the last padded with copies of its last image), not L2-normalised (cosines and rankings do
    not need it)."""
    outputs = []
    for start in range(0, len(images), batch):
        chunk = list(images[start:start + batch])
        real = len(chunk)
        chunk += [chunk[-1]] * (batch - real)
        outputs.append(np.asarray(runner.infer(runner.prepare(chunk)))[:real])
    return np.concatenate(outputs)


def row_fields(figures: Optional[ParityFigures], precision: str) -> Dict[str, Any]:
    """The agreement columns of a :class:`cvnet.benchmarks.report.BenchRow`."""
    if figures is None:
        return {}
    return {"cosine_min": figures.cosine_min, "top5_agreement": figures.top5_agreement,
            "agrees": keeps_rankings(figures, precision)}


def fastest_paths(rows: Sequence[Any]) -> List[Dict[str, Any]]:
    """Per batch size, the fastest network-only CPU row that keeps the rankings.

    Returns:
        One record per batch size (ascending): ``batch``, ``backend``, ``precision``,
        ``throughput`` (images/s), ``top5_agreement``, and ``candidates`` (CPU rows with
        agreement figures at that batch). Batch sizes whose rows have no figures are left out.
    """
    out = []
    for batch in sorted({r.batch for r in rows}):
        measured = [r for r in rows if r.batch == batch and r.mode == "network"
                    and r.device == "cpu" and r.agrees is not None]
        passing = [r for r in measured if r.agrees]
        if not measured:
            continue
        best = max(passing, key=lambda r: r.throughput) if passing else None
        out.append({"batch": batch, "candidates": len(measured),
                    "backend": best.backend if best else None,
                    "precision": best.precision if best else None,
                    "throughput": best.throughput if best else None,
                    "top5_agreement": best.top5_agreement if best else None})
    return out


def fastest_line(records: Sequence[Dict[str, Any]]) -> Optional[str]:
    """The report's last line: the fastest CPU path that keeps the rankings, per batch size."""
    if not records:
        return None
    parts = []
    for record in records:
        if record["backend"] is None:
            parts.append("batch {}: none of {} passes".format(record["batch"],
                                                             record["candidates"]))
        else:
            parts.append("batch {}: {} {} ({:.1f} images/s, top-5 agreement {:.0%})".format(
                record["batch"], record["backend"], record["precision"], record["throughput"],
                record["top5_agreement"]))
    return "Fastest CPU path that keeps the rankings: " + "; ".join(parts)
