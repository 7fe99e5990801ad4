"""INT8 entropy calibration for ``cvnet-build --precision int8 --calib DIR`` (TensorRT 8-10 only).

Not for the Jetson Nano: its GPU (compute capability 5.3) has no fast INT8, and TensorRT 11 removed
calibrators altogether (explicit Q/DQ quantization only), so both are refused before any image is
read. Where it applies (Xavier/Orin on JetPack 5, desktop GPUs with TensorRT 8.5-10.x), calibration
images are decoded and preprocessed by the same path as inference
(:func:`cvnet.engines.spec.prepare_images`) and fed to TensorRT's ``IInt8EntropyCalibrator2`` in
whole batches through one pycuda device buffer. Images left over after the last whole batch are left
out: padding a batch with zeros would add a spike at 0 to every activation histogram the calibrator
builds. The resulting scales are cached next to the plan with a sidecar (``<cache>.json``) naming
what they were made from: the model (the ONNX's sha256 and input shape), the calibration images
(a sha256 over the files' names and sizes, in the order they were fed) and the preprocessing
(layout, dtype, mean and std). A rebuild with all of these the same skips calibration; a cache
from another model, another calibration set or another normalisation is never used (it is
calibrated again and replaced).
"""

import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from cvnet.core.artifact import ArtifactMetadata
from cvnet.core.fileio import write_files_atomic
from cvnet.core.preprocess import ImageDecodeError, decode_image, find_images
from cvnet.engines import gpu, trt_compat
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineBuildError
from cvnet.engines.spec import (InputSpec, ModelIO, prepare_images, spec_from_metadata,
                                spec_from_model)

logger = logging.getLogger(__name__)

#: The calibrator class, as recorded in cache sidecars and plan sidecars.
CALIBRATOR = "IInt8EntropyCalibrator2"


def calibration_files(folder: str, limit: int) -> List[str]:
    """Up to ``limit`` image files under ``folder``, sorted, spread evenly over the whole set.

    Raises:
        EngineBuildError: The folder does not exist.
        ConfigError: It holds no images (see :func:`cvnet.core.preprocess.find_images`).
    """
    if not os.path.isdir(folder):
        raise EngineBuildError("--calib {}: no such folder; give a folder of representative "
                               "images (crops like the ones the engine will see)".format(folder))
    files = [os.path.join(folder, name) for name in find_images(folder, "--calib")]
    if len(files) > limit:
        step = len(files) / float(limit)
        files = [files[int(i * step)] for i in range(limit)]
    return files


def calibration_batches(files: Sequence[str], spec: InputSpec, batch: int) -> Iterator[np.ndarray]:
    """Preprocessed batches of exactly ``batch`` images.

    Undecodable files are skipped with a warning; images left over after the last whole batch
    are left out (logged): TensorRT calibrates on whole batches, and zero padding would skew the
    activation histograms.
    """
    pending = []  # type: List[np.ndarray]
    for path in files:
        try:
            pending.append(decode_image(path))
        except ImageDecodeError as err:
            logger.warning("calibration: skipped %s", err)
            continue
        if len(pending) == batch:
            yield prepare_images(pending, spec)
            pending = []
    if pending:
        logger.info("calibration: the last %d image(s) do not fill a batch of %d and are left "
                    "out", len(pending), batch)


def cache_record(onnx_sha256: str, input_shape: Sequence[int]) -> Dict[str, Any]:
    """What a calibration cache's sidecar records of the model it was made for."""
    return {"calibrator": CALIBRATOR, "onnx_sha256": onnx_sha256,
            "input_shape": [int(d) for d in input_shape]}


def calibration_record(files: Sequence[str], folder: str, spec: InputSpec) -> Dict[str, Any]:
    """What a calibration cache's sidecar records of the data it was made from.

    Args:
        files: The calibration files, in the order they are fed (:func:`calibration_files`).
        folder: The ``--calib`` folder (names are recorded relative to it, so a moved folder
            still matches).
        spec: The input spec the images are preprocessed for (its mean/std, layout, dtype).

    Returns:
        ``calibration_set``: sha256 over each file's relative name and size in bytes;
        ``calibration_files``: how many; ``preprocess``: layout, dtype, mean and std (None
        where the graph normalises: then they are part of the ONNX and its sha256).
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.fsencode(os.path.relpath(path, folder)) + b"\0")
        digest.update("{}\n".format(os.path.getsize(path)).encode("ascii"))
    preprocess = spec.preprocess
    return {"calibration_set": digest.hexdigest(), "calibration_files": len(files),
            "preprocess": {"layout": spec.layout, "dtype": spec.dtype,
                           "mean": None if preprocess is None else [float(v) for v in
                                                                    preprocess.mean],
                           "std": None if preprocess is None else [float(v) for v in
                                                                   preprocess.std]}}


def cache_sidecar(cache_path: str) -> str:
    """``model.plan.calib`` -> ``model.plan.calib.json``."""
    return cache_path + ".json"


def cache_mismatch(cache_path: str, record: Dict[str, Any]) -> Optional[str]:
    """Why the calibration cache at ``cache_path`` is not this model's, or None if it is."""
    try:
        with open(cache_sidecar(cache_path)) as handle:
            recorded = json.load(handle)
    except (OSError, ValueError) as err:
        return "its sidecar {} cannot be read ({}), so which model it belongs to is " \
               "unknown".format(os.path.basename(cache_sidecar(cache_path)), err)
    differing = [key for key in sorted(record) if recorded.get(key) != record[key]]
    if differing:
        return "it was made for another model, calibration set or preprocessing ({} differ{})" \
            .format(", ".join(differing), "s" if len(differing) == 1 else "")
    return None


def entropy_calibrator(trt: Any, cuda: Any, batches: Iterator[np.ndarray],
                       batch_shape: Sequence[int], dtype: Any, cache_path: str,
                       record: Dict[str, Any]) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed from ``batches`` (defined here: it subclasses TensorRT).

    Args:
        trt: The imported tensorrt module.
        cuda: ``pycuda.driver`` (a context must be current).
        batches: Whole batches, ``batch_shape`` each.
        batch_shape: Input shape of one batch.
        dtype: Input dtype.
        cache_path: Calibration cache, read when its sidecar matches ``record``, written after.
        record: :func:`cache_record` of this model with :func:`calibration_record` of its
            calibration data.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.images = 0
            self.cache_used = False
            self._shape = tuple(batch_shape)
            self._host = np.zeros(self._shape, dtype)
            self._device = cuda.mem_alloc(self._host.nbytes)

        def get_batch_size(self) -> int:
            return self._shape[0]

        def get_batch(self, names: Sequence[str], *args: Any) -> Optional[List[int]]:
            batch = next(batches, None)
            if batch is None:
                return None
            np.copyto(self._host, batch)  # whole batches only: calibration_batches
            cuda.memcpy_htod(self._device, self._host)
            self.images += len(batch)
            if self.images % (20 * self._shape[0]) < self._shape[0]:
                logger.info("calibration: %d images", self.images)
            return [int(self._device)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if not os.path.exists(cache_path):
                return None
            mismatch = cache_mismatch(cache_path, record)
            if mismatch:
                logger.warning("not using calibration cache %s: %s; calibrating again (the "
                               "cache is replaced afterwards)", cache_path, mismatch)
                return None
            logger.info("using calibration cache %s (made for this model, calibration set and "
                        "preprocessing)", cache_path)
            self.cache_used = True
            with open(cache_path, "rb") as handle:
                return handle.read()

        def write_calibration_cache(self, cache: Any) -> None:
            sidecar = dict(record, images=self.images, tensorrt_version=trt_compat.
                           tensorrt_version(trt))
            write_files_atomic({cache_path: bytes(cache), cache_sidecar(cache_path): (
                json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8")})

        def free(self) -> None:
            self._device.free()

    return EntropyCalibrator()


class Int8Calibration(object):
    """Configures an INT8 build with entropy calibration, for the duration of the build.

    Entering checks that INT8 is possible and that there is at least one batch of images,
    retains and pushes the device's primary CUDA context in pycuda (the calibrator's device
    buffer lives in it; it is the context the build runs in), and sets the INT8 flag, the
    calibrator and the calibration profile (FP16, the fallback for layers without INT8
    kernels, is the builder's decision: where the GPU has fast FP16). Leaving frees the buffer,
    pops the context and releases it.

    Args:
        trt: The imported tensorrt module.
        builder: The TensorRT builder.
        config: Its builder config.
        options: The :class:`cvnet.engines.build_policy.BuildOptions` (``calib_dir``,
            ``calib_images``, ``device``).
        metadata: The ONNX sidecar (input size, mean/std), or None.
        input_name: The network input.
        batch_shape: Input shape of one calibration batch.
        cache_path: Calibration cache file (read if its sidecar names this model, calibration
            set and preprocessing; written after calibrating).
        onnx_sha256: SHA-256 of the ONNX file, recorded with the cache.

    Raises:
        EngineBuildError: INT8 is not possible with this TensorRT or GPU (always the case on a
            Jetson Nano), or there are fewer calibration images than one batch.
        MissingDependencyError: pycuda is not installed.
    """

    def __init__(self, trt: Any, builder: Any, config: Any, options: Any,
                 metadata: Optional[ArtifactMetadata], input_name: str,
                 batch_shape: Sequence[int], cache_path: str, onnx_sha256: str):
        self._trt, self._builder, self._config = trt, builder, config
        self._options = options
        self._metadata = metadata
        self._input_name = input_name
        self._batch_shape = tuple(int(d) for d in batch_shape)
        self._cache_path = cache_path
        self._record = cache_record(onnx_sha256, self._batch_shape[1:])
        self._files = []  # type: List[str]
        self._calibrator = None  # type: Any
        self._context = None  # type: Any
        self._images = 0
        self._cache_used = False

    def __enter__(self) -> "Int8Calibration":
        trt, builder = self._trt, self._builder
        possible, reason = trt_compat.int8_support(builder, trt)
        if not possible:
            raise EngineBuildError("--precision int8 is not possible here: {}. Build FP16 (the "
                                   "default) "
                                   "instead".format(reason))
        cuda = require("pycuda.driver", "--precision int8 calibration")
        self._files = calibration_files(self._options.calib_dir, self._options.calib_images)
        if len(self._files) < self._batch_shape[0]:
            raise EngineBuildError(
                "--calib {}: {} image(s), fewer than one calibration batch of {} (the profile's "
                "opt batch); add images or build with a smaller --batch opt".format(
                    self._options.calib_dir, len(self._files), self._batch_shape[0]))
        if self._metadata is not None:
            spec = spec_from_metadata(self._metadata)
        else:
            spec = spec_from_model(ModelIO(self._input_name, self._batch_shape, "float32", "",
                                           ()), self._input_name)
        self._record.update(calibration_record(self._files, self._options.calib_dir, spec))
        cuda.init()
        context = cuda.Device(self._options.device).retain_primary_context()
        context.push()
        self._context = context
        try:
            self._calibrator = entropy_calibrator(
                trt, cuda, calibration_batches(self._files, spec, self._batch_shape[0]),
                self._batch_shape, np.dtype(spec.dtype), self._cache_path, self._record)
            profile = trt_compat.make_profile(builder, self._input_name, [self._batch_shape] * 3)
            trt_compat.enable_int8(self._config, trt, self._calibrator, profile)
        except BaseException:
            self.__exit__()
            raise
        logger.info("INT8: calibrating on up to %d images from %s in batches of %d",
                    len(self._files), self._options.calib_dir, self._batch_shape[0])
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._calibrator is not None:
            self._images = self._calibrator.images
            self._cache_used = self._calibrator.cache_used
            self._calibrator.free()
            self._calibrator = None
        if self._context is not None:
            gpu.release_pycuda_context(self._context)
            self._context = None

    def check(self) -> None:
        """After the build: fails if TensorRT got no calibration batch and no cache.

        Raises:
            EngineBuildError: Naming the folder, the batch and what to change.
        """
        if self._images == 0 and not self._cache_used:
            raise EngineBuildError(
                "INT8 calibration got no whole batch of {} images from {} ({} image files; "
                "undecodable ones are skipped, see the warnings above); add images or build "
                "with a smaller --batch opt".format(self._batch_shape[0],
                                                    self._options.calib_dir, len(self._files)))

    def record(self) -> Dict[str, Any]:
        """What the plan's sidecar records about the calibration."""
        return {"calibrator": CALIBRATOR, "images": self._images, "files": len(self._files),
                "batch": self._batch_shape[0], "cache": os.path.basename(self._cache_path),
                "cache_reused": self._cache_used}
