"""The runner base: load once, run many; everything that does not depend on the backend.

A runner opens one model file (``.plan``, ``.onnx`` or ``.pt``), reads its sidecar, and turns
decoded images into embeddings::

    with open_engine("cvnet.plan") as runner:          # activate: load, allocate
        embeddings = runner.embed([image1, image2])    # (2, D) float32
    # deactivate: free

The base does the sidecar, the input spec and input validation (:mod:`cvnet.engines.spec`),
preprocessing (through :mod:`cvnet.core.preprocess`, the project's only preprocessing path),
splitting any number of images into batches the model accepts (padding the last one for a
static-batch model and dropping the padding), L2 normalisation and timing. A backend overrides only
``_activate`` (load; report the model's input and output), ``_infer`` (one batch the model accepts
-> its output) and ``_deactivate`` (free). A backend that sets ``gpu_thread`` has all three run on
one dedicated thread, so its GPU work never changes threads whichever thread calls the runner.
"""

import concurrent.futures
import logging
import os
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.artifact import ArtifactMetadata, read_sidecar, sidecar_path
from cvnet.core.preprocess import l2_normalize
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineError, EngineInputError, EngineLoadError
from cvnet.engines.spec import (InputSpec, ModelIO, check_spec, describe, fit_batch_range,
                                prepare_images, spec_from_metadata, spec_from_model,
                                validate_images)

logger = logging.getLogger(__name__)


def batch_chunks(count: int, batch_min: int, batch_max: int) -> List[Tuple[int, int, int]]:
    """Splits ``count`` items into batches a model with that batch range runs.

    Returns:
        ``(start, stop, size)`` per batch: rows ``start:stop`` of the input, run as a batch of
        ``size`` rows (``size > stop - start`` when the batch is padded up to ``batch_min``).
    """
    if not 1 <= batch_min <= batch_max:
        raise EngineInputError("batch range {}:{} is invalid; expected 1 <= min <= max".format(
            batch_min, batch_max))
    return [(start, min(start + batch_max, count), max(min(batch_max, count - start), batch_min))
            for start in range(0, count, batch_max)]


class Runner(object):
    """Base of every runner: context manager, validation, batching, timing.

    Args:
        path: The model file.
        metadata: The sidecar's content, if already read; by default the runner reads
            ``<path>.json``.
        normalize: L2-normalise embeddings (per call overridable in :meth:`embed`).
        batch_range: (min, max) batch to run; must lie inside what the model runs. By default
            the model's own range (TensorRT profile, static batch) or the sidecar's.

    Attributes:
        path: Absolute path of the model file.
        metadata: The sidecar (or the metadata in the file), None without either.
        spec: The input spec, set by :meth:`activate`.
        last_inference_time: Seconds the backend spent in the last :meth:`embed` or
            :meth:`infer` call (all its batches; copies to and from the GPU included,
            preprocessing not).
    """

    #: Backend name, for messages.
    backend = "base"
    #: What the model file is, for messages: "a TensorRT engine", "an ONNX model"...
    kind = "a model"
    #: Run ``_activate``, ``_infer`` and ``_deactivate`` on one dedicated thread.
    gpu_thread = False

    def __init__(self, path: str, *, metadata: Optional[ArtifactMetadata] = None,
                 normalize: bool = False, batch_range: Optional[Tuple[int, int]] = None):
        self.path = os.path.abspath(os.fspath(path))
        if os.path.isdir(self.path):
            raise EngineLoadError("{} is a folder; give the path of a .plan, .onnx or .pt model "
                                  "file".format(self.path))
        if not os.path.isfile(self.path):
            raise EngineLoadError("{}: no such file; give the path of a .plan, .onnx or .pt "
                                  "model".format(self.path))
        if os.path.getsize(self.path) == 0:
            raise EngineLoadError("{} is empty (0 bytes): an interrupted copy or build? Copy or "
                                  "rebuild it".format(self.path))
        if batch_range is not None and not 1 <= batch_range[0] <= batch_range[1]:
            raise EngineInputError("batch_range must be (min, max) with 1 <= min <= max, got "
                                   "{}".format(batch_range))
        self.metadata = metadata
        self.normalize = bool(normalize)
        self.spec = None  # type: Optional[InputSpec]
        self.last_inference_time = None  # type: Optional[float]
        self._batch_range = tuple(batch_range) if batch_range is not None else None
        self._executor = None  # type: Optional[concurrent.futures.ThreadPoolExecutor]
        self._active = False

    def __repr__(self) -> str:
        return "{}({!r}, {})".format(type(self).__name__, self.path,
                                     "active" if self._active else "inactive")

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        self.deactivate()
        return False

    @property
    def active(self) -> bool:
        """Whether the model is loaded."""
        return self._active

    # -- lifecycle ---------------------------------------------------------------------------

    def activate(self) -> "Runner":
        """Reads the sidecar, loads the model and checks that the two agree.

        Raises:
            EngineLoadError: The model file cannot be loaded.
            MetadataError: The sidecar is invalid or describes another model.
            MissingDependencyError: The backend's package is not installed.
        """
        if self._active:
            raise EngineError("{} is already active; deactivate it first".format(self))
        if self.metadata is None:
            self.metadata = self._read_sidecar()
        if self.gpu_thread:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cvnet-{}".format(self.backend))
        try:
            io = self._call(self._activate)
        except BaseException:
            self._stop_thread()
            raise
        try:
            self.spec = self._resolve_spec(io)
        except BaseException:
            try:
                self._call(self._deactivate)
            finally:
                self._stop_thread()
            raise
        self._active = True
        logger.debug("%s: input %s %s from the %s", self, self.spec.input_name,
                     self.spec.batch_shape(self.spec.batch_max), self.spec.source)
        return self

    def deactivate(self) -> None:
        """Frees the model and everything allocated for it (safe to call twice)."""
        if not self._active:
            return
        try:
            self._call(self._deactivate)
        finally:
            self._stop_thread()
            self._active = False

    def _stop_thread(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Runs ``function`` on the runner's GPU thread, or here when it has none."""
        if self._executor is None:
            return function(*args)
        return self._executor.submit(function, *args).result()

    def _require(self, module: str, fix: Optional[str] = None) -> Any:
        """Imports the backend's ``module``, or refuses naming this model file and the fix."""
        return require(module, "{}: {}".format(self.path, self.kind), fix)

    def _read_sidecar(self) -> Optional[ArtifactMetadata]:
        path = sidecar_path(self.path)
        return read_sidecar(path) if os.path.exists(path) else None

    def _resolve_spec(self, io: ModelIO) -> InputSpec:
        source = "sidecar"
        if self.metadata is None:
            self.metadata = self._embedded_metadata()
            source = "metadata_props"
        if self.metadata is None:
            spec = spec_from_model(io, self.path)
            self._warn_without_metadata(spec, io)
        else:
            spec = spec_from_metadata(self.metadata, source)
            check_spec(spec, io, self.path)
        return fit_batch_range(spec, io.batch_range, self._batch_range)

    def _embedded_metadata(self) -> Optional[ArtifactMetadata]:
        """Metadata stored inside the model file, for a backend that can read it."""
        return None

    def _warn_without_metadata(self, spec: InputSpec, io: ModelIO) -> None:
        logger.warning(
            "%s has no sidecar (%s): using the model's input %r %s %s%s; copy the sidecar next "
            "to it to use what the export recorded", self.path,
            os.path.basename(sidecar_path(self.path)), spec.input_name,
            spec.batch_shape(spec.batch_max)[1:], spec.dtype,
            ", ImageNet mean/std" if spec.preprocess is not None else ", normalised in the graph")

    # -- backend hooks -----------------------------------------------------------------------

    def _activate(self) -> ModelIO:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    # -- timing hooks (cvnet-bench) -----------------------------------------------------------

    def synchronize(self) -> None:
        """Waits for the device's queued work; a runner whose ``infer`` returns only when its
        outputs are on the host (all but an asynchronous GPU one) has nothing to wait for."""

    def peak_gpu_memory_mb(self) -> Optional[float]:
        """Peak GPU memory the backend allocated so far, MiB; None where it does not say."""
        return None

    # -- running -----------------------------------------------------------------------------

    def _require_active(self) -> InputSpec:
        if not self._active or self.spec is None:
            raise EngineError("{} is not active: use it as a context manager (with "
                              "open_engine(path) as runner: ...) or call activate()".format(self))
        return self.spec

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded BGR images -> this model's input (see :func:`prepare_images`)."""
        return prepare_images(images, self._require_active())

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Runs an already preprocessed batch of any length.

        Args:
            batch: ``spec.batch_shape(N)`` array of ``spec.dtype``.

        Returns:
            (N, D) float32 model output (not L2-normalised here).

        Raises:
            EngineInputError: The batch has the wrong type, shape or dtype.
        """
        spec = self._require_active()
        expected = spec.batch_shape(1)[1:]
        if (not isinstance(batch, np.ndarray) or batch.ndim != 4
                or tuple(batch.shape[1:]) != expected or batch.dtype != np.dtype(spec.dtype)
                or len(batch) == 0):
            raise EngineInputError(
                "expected a preprocessed batch of shape (N, {}) {} ({} input {!r}), got {}".format(
                    ", ".join(str(d) for d in expected), spec.dtype, spec.layout, spec.input_name,
                    describe(batch)))
        batch = np.ascontiguousarray(batch)
        return self._run(len(batch), lambda start, stop: batch[start:stop])

    def embed(self, images: Any, normalize: Optional[bool] = None) -> np.ndarray:
        """Embeddings of decoded images, or of an already preprocessed batch.

        Args:
            images: A list of (H, W, 3) uint8 BGR images of any size (from
                :func:`cvnet.core.preprocess.decode_image` or ``cv2.imread``), or a preprocessed
                ``spec.batch_shape(N)`` array. Any number: they are run in batches the model
                accepts, preprocessed one batch at a time.
            normalize: L2-normalise the rows; the runner's ``normalize`` when None.

        Returns:
            (N, D) float32 embeddings, in input order.

        Raises:
            EngineInputError: An image or the batch is not what the model takes; nothing is run.
        """
        spec = self._require_active()
        if isinstance(images, np.ndarray):
            if images.ndim != 4:
                raise EngineInputError(
                    "embed() takes a list of (H, W, 3) uint8 BGR images or a preprocessed batch "
                    "of shape {}; got {} (wrap a single image in a list)".format(
                        ("N",) + spec.batch_shape(1)[1:], describe(images)))
            out = self.infer(images)
        else:
            images = list(images)
            validate_images(images)
            out = self._run(len(images),
                            lambda start, stop: prepare_images(images[start:stop], spec))
        use = self.normalize if normalize is None else normalize
        return l2_normalize(out) if use and not spec.output_l2_normalized else out

    def _run(self, count: int, rows: Callable[[int, int], np.ndarray]) -> np.ndarray:
        """Runs ``count`` rows in batches the model accepts; ``rows(start, stop)`` makes one."""
        spec = self.spec
        outputs = []
        elapsed = 0.0
        for start, stop, size in batch_chunks(count, spec.batch_min, spec.batch_max):
            batch = rows(start, stop)
            if size > len(batch):
                pad = np.zeros((size - len(batch),) + batch.shape[1:], batch.dtype)
                batch = np.concatenate([batch, pad])
            started = time.perf_counter()
            out = self._call(self._infer, batch)
            elapsed += time.perf_counter() - started
            out = np.asarray(out, dtype=np.float32)
            if out.ndim != 2 or len(out) != size:
                raise EngineError("{} returned shape {} for a batch of {}; expected (batch, "
                                  "embedding_dim)".format(self.backend, out.shape, size))
            outputs.append(out[:stop - start])
        self.last_inference_time = elapsed
        return np.concatenate(outputs)
