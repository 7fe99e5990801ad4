"""INT8 entropy calibration for ``cvnet-build --int8 --calib DIR`` (TensorRT 8.x-10.x only).

Not for the Jetson Nano: its GPU (compute capability 5.3) has no fast INT8, and TensorRT 11
removed calibrators altogether (explicit Q/DQ quantization only), so both are refused before any
image is read. Where it applies (Xavier/Orin on JetPack 5, desktop GPUs with TensorRT 8.5-10.x),
calibration images are decoded and preprocessed by the same path as inference
(:func:`engines.base.prepare_images`), fed to TensorRT's ``IInt8EntropyCalibrator2`` through one
pycuda device buffer, and the resulting scales are cached next to the plan so a rebuild skips
calibration.
"""

import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from cvnet.artifact import ArtifactMetadata
from cvnet.fileio import write_bytes_atomic
from cvnet.preprocess import ImageDecodeError, decode_image, find_images
from engines import trt_compat
from engines.base import InputSpec, ModelIO, prepare_images, spec_from_metadata, spec_from_model
from engines.deps import require
from engines.errors import EngineBuildError

logger = logging.getLogger(__name__)


def calibration_files(folder: str, limit: int) -> List[str]:
    """Up to ``limit`` image files under ``folder``, sorted, spread evenly over the whole set.

    Raises:
        EngineBuildError: The folder does not exist.
        ConfigError: It holds no images (see :func:`cvnet.preprocess.find_images`).
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
    """Preprocessed batches of ``batch`` images; undecodable files are skipped with a warning."""
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
        yield prepare_images(pending, spec)


def entropy_calibrator(trt: Any, cuda: Any, batches: Iterator[np.ndarray],
                       batch_shape: Sequence[int], dtype: Any, cache_path: str) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed from ``batches`` (defined here: it subclasses TensorRT)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.images = 0
            self._shape = tuple(batch_shape)
            self._host = np.zeros(self._shape, dtype)
            self._device = cuda.mem_alloc(self._host.nbytes)

        def get_batch_size(self) -> int:
            return self._shape[0]

        def get_batch(self, names: Sequence[str], *args: Any) -> Optional[List[int]]:
            batch = next(batches, None)
            if batch is None:
                return None
            self._host[:] = 0  # a short last batch is padded with zeros
            self._host[:len(batch)] = batch
            cuda.memcpy_htod(self._device, self._host)
            self.images += len(batch)
            if self.images % (20 * self._shape[0]) < self._shape[0]:
                logger.info("calibration: %d images", self.images)
            return [int(self._device)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if os.path.exists(cache_path):
                logger.info("using calibration cache %s", cache_path)
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes_atomic(cache_path, bytes(cache))

        def free(self) -> None:
            self._device.free()

    return EntropyCalibrator()


class Int8Calibration(object):
    """Configures an INT8 build with entropy calibration, for the duration of the build.

    Entering checks that INT8 is possible, retains and pushes the device's primary CUDA context
    (the one TensorRT uses; the calibrator's device buffer lives in it), and sets the INT8 flag,
    the calibrator and the calibration profile; FP16 stays enabled as the fallback for layers
    without INT8 kernels. Leaving frees the buffer and pops the context.

    Args:
        trt: The imported tensorrt module.
        builder: The TensorRT builder.
        config: Its builder config.
        options: The :class:`engines.builder.BuildOptions` (``calib_dir``, ``calib_images``,
            ``device``).
        metadata: The ONNX sidecar (input size, mean/std), or None.
        input_name: The network input.
        batch_shape: Input shape of one calibration batch.
        cache_path: Calibration cache file (read if present, written after calibrating).

    Raises:
        EngineBuildError: INT8 is not possible with this TensorRT or GPU (always the case on a
            Jetson Nano), or there are no calibration images.
        MissingDependencyError: pycuda is not installed.
    """

    def __init__(self, trt: Any, builder: Any, config: Any, options: Any,
                 metadata: Optional[ArtifactMetadata], input_name: str,
                 batch_shape: Sequence[int], cache_path: str):
        self._trt, self._builder, self._config = trt, builder, config
        self._options = options
        self._metadata = metadata
        self._input_name = input_name
        self._batch_shape = tuple(int(d) for d in batch_shape)
        self._cache_path = cache_path
        self._files = []  # type: List[str]
        self._calibrator = None
        self._context = None

    def __enter__(self) -> "Int8Calibration":
        trt, builder = self._trt, self._builder
        possible, reason = trt_compat.int8_support(builder, trt)
        if not possible:
            raise EngineBuildError("--int8 is not possible here: {}. Build FP16 (the default) "
                                   "instead".format(reason))
        cuda = require("pycuda.driver", "--int8 calibration")
        self._files = calibration_files(self._options.calib_dir, self._options.calib_images)
        if self._metadata is not None:
            spec = spec_from_metadata(self._metadata)
        else:
            spec = spec_from_model(ModelIO(self._input_name, self._batch_shape, "float32", "",
                                           ()), self._input_name)
        cuda.init()
        self._context = cuda.Device(self._options.device).retain_primary_context()
        self._context.push()
        try:
            self._calibrator = entropy_calibrator(
                trt, cuda, calibration_batches(self._files, spec, self._batch_shape[0]),
                self._batch_shape, np.dtype(spec.dtype), self._cache_path)
            profile = trt_compat.make_profile(builder, self._input_name, [self._batch_shape] * 3)
            trt_compat.enable_int8(self._config, trt, self._calibrator, profile)
            if trt_compat.fp16_mode(builder, trt) == trt_compat.FP16_BUILDER_FLAG:
                trt_compat.enable_fp16(builder, self._config, trt)
        except BaseException:
            self.__exit__()
            raise
        logger.info("INT8: calibrating on up to %d images from %s in batches of %d",
                    len(self._files), self._options.calib_dir, self._batch_shape[0])
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._calibrator is not None:
            self._calibrator.free()
            self._calibrator = None
        if self._context is not None:
            self._context.pop()
            self._context = None

    def record(self) -> Dict[str, Any]:
        """What the plan's sidecar records about the calibration."""
        return {"calibrator": "IInt8EntropyCalibrator2", "images": len(self._files),
                "batch": self._batch_shape[0], "cache": os.path.basename(self._cache_path)}
