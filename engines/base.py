"""The runner base: load once, run many; everything that does not depend on the backend.

A runner opens one model file (``.plan``, ``.onnx`` or ``.pt``), reads its sidecar, and turns
decoded images into embeddings::

    with open_engine("cvnet.plan") as runner:          # activate: load, allocate
        embeddings = runner.embed([image1, image2])    # (2, D) float32
    # deactivate: free

The base does the sidecar, the input spec, input validation, preprocessing (through
:mod:`cvnet.core.preprocess`, the project's only preprocessing path), splitting any number of images
into batches the model accepts (padding the last one for a static-batch model and dropping the
padding), L2 normalisation and timing. A backend overrides only ``_activate`` (load; report the
model's input and output), ``_infer`` (one batch the model accepts -> its output) and
``_deactivate`` (free). A backend that sets ``gpu_thread`` has all three run on one dedicated
thread, so its GPU work never changes threads whichever thread calls the runner.
"""

import concurrent.futures
import logging
import os
import time
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.artifact import ArtifactMetadata, read_sidecar, sidecar_path
from cvnet.core.errors import MetadataError
from cvnet.core.preprocess import PreprocessConfig, l2_normalize, preprocess_batch, resize_rgb
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineError, EngineInputError, EngineLoadError

logger = logging.getLogger(__name__)

#: Largest batch used for a dynamic-batch model that records no range.
DEFAULT_MAX_BATCH = 32


class ModelIO(NamedTuple):
    """A loaded model's single input and output, as the backend sees them.

    Attributes:
        input_name: Name of the input tensor.
        input_shape: Its shape; None (or a negative number) for a dynamic dimension.
        input_dtype: numpy dtype name, e.g. ``"float32"``.
        output_name: Name of the output tensor.
        output_shape: Its shape, ``(N, D)``; None for dynamic dimensions.
        batch_range: (min, max) batch the model itself fixes (a TensorRT profile, a static
            batch dimension), or None when any batch runs.
    """

    input_name: str
    input_shape: Tuple[Optional[int], ...]
    input_dtype: str
    output_name: str
    output_shape: Tuple[Optional[int], ...]
    batch_range: Optional[Tuple[int, int]] = None


class InputSpec(NamedTuple):
    """What a runner feeds its model and gets back; from the sidecar, or the model as fallback.

    Attributes:
        input_name: Name of the model input.
        layout: ``"NCHW"`` (normalised float32 from :func:`cvnet.core.preprocess.preprocess_batch`) or
            ``"NHWC"`` (RGB pixel values from :func:`cvnet.core.preprocess.resize_rgb`; the graph
            normalises them).
        dtype: numpy dtype name of the input, ``"float32"`` or ``"uint8"``.
        height: Input height in pixels.
        width: Input width in pixels.
        preprocess: Size and mean/std for ``preprocess_batch``; None when the graph normalises.
        batch_min: Smallest batch the model runs; shorter batches are padded to it.
        batch_max: Largest batch the model runs; longer inputs are split.
        output_name: Name of the model output.
        embedding_dim: Length of one embedding (None if unknown).
        output_l2_normalized: Whether the model's output is already L2-normalised.
        source: Where this came from: ``"sidecar"``, ``"metadata_props"`` or ``"model input"``.
    """

    input_name: str
    layout: str
    dtype: str
    height: int
    width: int
    preprocess: Optional[PreprocessConfig]
    batch_min: int
    batch_max: int
    output_name: str
    embedding_dim: Optional[int]
    output_l2_normalized: bool
    source: str

    def batch_shape(self, batch: int) -> Tuple[int, int, int, int]:
        """The model input shape for ``batch`` images."""
        if self.layout == "NHWC":
            return (batch, self.height, self.width, 3)
        return (batch, 3, self.height, self.width)


def spec_from_metadata(metadata: ArtifactMetadata, source: str = "sidecar") -> InputSpec:
    """The input spec a sidecar describes."""
    return InputSpec(
        input_name=metadata.input_name, layout=metadata.input_layout,
        dtype=metadata.input_dtype, height=metadata.input_height, width=metadata.input_width,
        preprocess=None if metadata.preprocess_in_graph else metadata.preprocess_config(),
        batch_min=metadata.batch_min, batch_max=metadata.batch_max,
        output_name=metadata.output_name, embedding_dim=metadata.embedding_dim,
        output_l2_normalized=metadata.output_l2_normalized, source=source)


def _known(dim: Any) -> Optional[int]:
    """A fixed dimension as an int; None for dynamic ones (None, -1, a symbolic name)."""
    return int(dim) if isinstance(dim, (int, np.integer)) and dim >= 0 else None


def spec_from_model(io: ModelIO, path: str) -> InputSpec:
    """The fallback input spec when there is no metadata: the model's own input shape.

    ``(N, 3, H, W)`` means normalised float32 input with ImageNet mean/std; ``(N, H, W, 3)``
    means RGB pixels normalised by the graph.

    Raises:
        EngineLoadError: The input shape tells neither layout nor size.
    """
    shape = tuple(_known(d) for d in io.input_shape)
    if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
        layout, height, width = "NCHW", shape[2], shape[3]
    elif len(shape) == 4 and shape[3] == 3:
        layout, height, width = "NHWC", shape[1], shape[2]
    else:
        layout, height, width = None, None, None
    if layout is None or height is None or width is None:
        raise EngineLoadError(
            "{}: no sidecar, and the model input {!r} has shape {}, which does not say the image "
            "size and layout (expected (N, 3, H, W) or (N, H, W, 3) with fixed H and W); copy its "
            "sidecar ({}) next to it".format(path, io.input_name, tuple(io.input_shape),
                                             os.path.basename(sidecar_path(path))))
    if layout == "NCHW" and io.input_dtype != "float32":
        raise EngineLoadError("{}: input {!r} is {} {}; cvnet models take float32 NCHW or "
                              "NHWC pixels".format(path, io.input_name, io.input_dtype, layout))
    output = tuple(_known(d) for d in io.output_shape)
    return InputSpec(
        input_name=io.input_name, layout=layout, dtype=io.input_dtype, height=height,
        width=width, preprocess=PreprocessConfig(height, width) if layout == "NCHW" else None,
        batch_min=1, batch_max=DEFAULT_MAX_BATCH, output_name=io.output_name,
        embedding_dim=output[-1] if len(output) == 2 else None, output_l2_normalized=False,
        source="model input")


def check_spec(spec: InputSpec, io: ModelIO, path: str) -> None:
    """Checks that a sidecar's spec describes the loaded model.

    Raises:
        MetadataError: Listing every disagreement (the files come from different exports).
    """
    problems = []
    if spec.input_name != io.input_name:
        problems.append("input name {!r} vs the model's {!r}".format(spec.input_name,
                                                                     io.input_name))
    expected = spec.batch_shape(1)[1:]
    actual = tuple(_known(d) for d in io.input_shape[1:])
    if len(actual) != 3 or any(a is not None and a != e for a, e in zip(actual, expected)):
        problems.append("input shape (N, {}) vs the model's {}".format(
            ", ".join(str(d) for d in expected), tuple(io.input_shape)))
    if spec.dtype != io.input_dtype:
        problems.append("input dtype {} vs the model's {}".format(spec.dtype, io.input_dtype))
    if spec.output_name != io.output_name:
        problems.append("output name {!r} vs the model's {!r}".format(spec.output_name,
                                                                      io.output_name))
    dim = _known(io.output_shape[-1]) if io.output_shape else None
    if dim is not None and spec.embedding_dim is not None and dim != spec.embedding_dim:
        problems.append("embedding_dim {} vs the model's {}".format(spec.embedding_dim, dim))
    if problems:
        raise MetadataError("{} does not match its sidecar ({}): {}; copy the model and the "
                            "sidecar written with it together".format(
                                path, spec.source, "; ".join(problems)))


def fit_batch_range(spec: InputSpec, model_range: Optional[Tuple[int, int]],
                    wanted: Optional[Tuple[int, int]]) -> InputSpec:
    """Sets the batch range: the model's own where it fixes one, narrowed by ``wanted``.

    Raises:
        EngineInputError: ``wanted`` lies outside what the model runs.
    """
    low, high = model_range if model_range is not None else (spec.batch_min, spec.batch_max)
    if wanted is not None:
        if model_range is not None and not (low <= wanted[0] <= wanted[1] <= high):
            raise EngineInputError("batch_range {}:{} is outside what the model runs ({}:{}); "
                                   "pick a range inside it".format(wanted[0], wanted[1], low,
                                                                   high))
        low, high = wanted
    return spec._replace(batch_min=int(low), batch_max=int(high))


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


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return "an array of shape {} dtype {}".format(value.shape, value.dtype)
    return "a {}".format(type(value).__name__)


def validate_images(images: Sequence[Any]) -> None:
    """Checks that every item is a decoded (H, W, 3) uint8 BGR image.

    Raises:
        EngineInputError: Naming the first bad item, what it is and what was expected.
    """
    if len(images) == 0:
        raise EngineInputError("no images given; expected a list of (H, W, 3) uint8 BGR images")
    for i, image in enumerate(images):
        ok = (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
              and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0)
        if not ok:
            raise EngineInputError(
                "image {}: expected an (H, W, 3) uint8 BGR array, got {}; decode files with "
                "cvnet.core.preprocess.decode_image, which also turns gray, BGRA and 16-bit images "
                "into that".format(i, _describe(image)))


def prepare_images(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Decoded BGR images -> the model input ``spec`` describes, by the shared preprocessing.

    Args:
        images: (H, W, 3) uint8 BGR images of any size.
        spec: The model's input spec.

    Returns:
        ``spec.batch_shape(len(images))`` array of ``spec.dtype``: normalised NCHW float32 from
        :func:`cvnet.core.preprocess.preprocess_batch`, or NHWC RGB pixels from
        :func:`cvnet.core.preprocess.resize_rgb` for a graph that normalises itself.

    Raises:
        EngineInputError: An item is not a decoded BGR image.
    """
    validate_images(images)
    if spec.preprocess is not None:
        return preprocess_batch(images, spec.preprocess)
    pixels = np.stack([resize_rgb(image, (spec.height, spec.width)) for image in images])
    return pixels.astype(spec.dtype)


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
                    _describe(batch)))
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
                        ("N",) + spec.batch_shape(1)[1:], _describe(images)))
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
