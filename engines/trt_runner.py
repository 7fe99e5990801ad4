"""TensorRT runner for ``.plan``/``.engine`` files, with pycuda (Python 3.6; both imported lazily).

Order of checks when activated, cheapest and clearest first:

1. the plan file against its sidecar's ``plan_sha256`` (a truncated or swapped file);
2. the sidecar's ``engine`` block against the installed TensorRT release and this GPU's name
   and compute capability (``cvnet.engines.gpu``, no CUDA context needed): a plan only loads on the
   release and GPU that built it, and TensorRT's own check (step 3) returns None with nothing
   but a log line;
3. deserialisation, whose None result is turned into an error naming both sides.

GPU work: the device's *primary* CUDA context (the one TensorRT's runtime API and PyTorch use) is
retained and pushed explicitly, never ``pycuda.autoinit``; page-locked host buffers and device
buffers are sized once for the largest batch, the output's from the shape TensorRT reports for it;
each batch sets the input shape, reads the output shape TensorRT derives from it, then an async copy
in, an enqueue and an async copy out on one CUDA stream, and one synchronisation (also when the
enqueue fails, before anything is freed). FP16 inputs and outputs are converted from and to float32
on the host. All of it runs on the runner's one GPU thread (see :class:`cvnet.engines.base.Runner`);
at shutdown the stream is synchronised, the TensorRT objects and buffers are released, then the
context is popped and its retain released (:func:`cvnet.engines.gpu.release_pycuda_context`).
Binding API on TensorRT 8.x, tensor API where present (:mod:`cvnet.engines.trt_compat`).
"""

import logging
from typing import Any, List, Optional, Union

import numpy as np

from cvnet.core.errors import ConfigError
from cvnet.core.fileio import sha256_bytes
from cvnet.engines import trt_compat
from cvnet.engines.base import Runner
from cvnet.engines.deps import INSTALL_HINTS
from cvnet.engines.errors import (EngineCompatibilityError, EngineError, EngineInputError,
                                  EngineLoadError)
from cvnet.engines.gpu import GpuInfo, device_ordinal, gpu_info, release_pycuda_context
from cvnet.engines.metadata import check_compatible, engine_info
from cvnet.engines.spec import ModelIO

logger = logging.getLogger(__name__)

#: The other way to run a model where TensorRT or pycuda is missing.
WITHOUT_TENSORRT = ("Without them, run the .onnx the engine was built from with ONNX Runtime "
                    "(--engine model.onnx).")


class TrtRunner(Runner):
    """Runs a serialized TensorRT engine built by ``cvnet-build``.

    Args:
        path: The ``.plan`` (or ``.engine``) file.
        device: The GPU: ``N``, ``"N"``, ``"cuda:N"`` or ``"cuda"`` (GPU 0)
            (:func:`cvnet.engines.gpu.device_ordinal`).
        allow_other_gpu: Accept a GPU whose name differs from the one recorded, when its compute
            capability is the same (TensorRT loads such a plan with a warning).
        check_hash: Check the file against the sidecar's ``plan_sha256`` before loading.
        verbose: TensorRT logs at VERBOSE instead of WARNING.
        **kwargs: See :class:`cvnet.engines.base.Runner` (``metadata``, ``normalize``,
            ``batch_range``).
    """

    backend = "tensorrt"
    kind = "a TensorRT engine"
    gpu_thread = True

    def __init__(self, path: str, *, device: Union[int, str] = 0, allow_other_gpu: bool = False,
                 check_hash: bool = True, verbose: bool = False, **kwargs: Any):
        super(TrtRunner, self).__init__(path, **kwargs)
        ordinal = device_ordinal(device)
        if ordinal is None:
            raise ConfigError("{}: a TensorRT engine runs on a GPU, not on device {!r}; give "
                              "cuda:N (or N)".format(path, device))
        self._device = ordinal
        self._allow_other_gpu = allow_other_gpu
        self._check_hash = check_hash
        self._verbose = verbose
        self.engine_info = None
        self.gpu = None  # type: Optional[GpuInfo]
        self.tensorrt_version = None  # type: Optional[str]
        self._reset()

    def _reset(self) -> None:
        self._cuda = None
        self._trt = None
        self._cuda_context = None
        self._logger = None
        self._runtime = None
        self._engine = None
        self._context = None
        self._stream = None
        self._tensors = []  # type: List[trt_compat.TensorDesc]
        self._source = None  # type: Optional[trt_compat.TensorDesc]
        self._target = None  # type: Optional[trt_compat.TensorDesc]
        self._device_buffers = []  # type: List[Any]
        self._host_input = None
        self._host_output = None  # flat: sized for the largest output TensorRT reported
        self._dynamic = False

    # -- checks before TensorRT sees the plan -------------------------------------------------

    def _read_plan(self) -> bytes:
        with open(self.path, "rb") as handle:
            data = handle.read()
        self.engine_info = engine_info(self.metadata) if self.metadata is not None else None
        info = self.engine_info
        if self._check_hash and info is not None and info.plan_sha256:
            actual = sha256_bytes(data)
            if actual != info.plan_sha256:
                raise EngineLoadError(
                    "{} does not match its sidecar (sha256 {}..., the sidecar records {}...; {} "
                    "bytes): truncated, corrupt, or from another build. Copy the .plan and its "
                    ".plan.json together, or rebuild with cvnet-build".format(
                        self.path, actual[:12], info.plan_sha256[:12], len(data)))
        elif self.metadata is not None and info is None:
            logger.warning("%s: the sidecar has no 'engine' block (an ONNX sidecar?), so only "
                           "TensorRT itself checks the version and GPU; rebuild with cvnet-build "
                           "to get one", self.path)
        if info is not None and info.parity is not None and info.parity.get("passed") is False:
            logger.warning("%s: its build measured embeddings that disagree with ONNX Runtime "
                           "(min cosine %s); rebuild with --keep-fp32 attention or --precision "
                           "fp32",
                           self.path, info.parity.get("min_cosine"))
        return data

    def _check_platform(self, trt: Any) -> None:
        self.tensorrt_version = trt_compat.tensorrt_version(trt)
        try:
            self.gpu = gpu_info(self._device)
        except EngineError as err:
            logger.warning("cannot query GPU %d before loading (%s); TensorRT will check it",
                           self._device, err)
            self.gpu = None
        if self.engine_info is not None:
            check_compatible(self.path, self.engine_info, self.tensorrt_version, self.gpu,
                             self._allow_other_gpu)

    # -- backend hooks (on the GPU thread) ----------------------------------------------------

    def _activate(self) -> ModelIO:
        data = self._read_plan()
        trt = self._require("tensorrt", INSTALL_HINTS["tensorrt"] + " " + WITHOUT_TENSORRT)
        cuda = self._require("pycuda.driver", INSTALL_HINTS["pycuda"] + " " + WITHOUT_TENSORRT)
        self._check_platform(trt)
        self._trt, self._cuda = trt, cuda
        try:
            cuda.init()
            context = cuda.Device(self._device).retain_primary_context()
        except cuda.Error as err:
            raise EngineError("cannot use CUDA device {}: {}".format(self._device, err))
        try:
            context.push()
        except cuda.Error as err:
            context.detach()
            raise EngineError("cannot use CUDA device {}: {}".format(self._device, err))
        self._cuda_context = context
        try:
            return self._load(data)
        except BaseException:
            self._release()
            raise

    def _load(self, data: bytes) -> ModelIO:
        trt, cuda = self._trt, self._cuda
        self._logger = trt_compat.make_logger(trt, self._verbose)  # must outlive the runtime
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineCompatibilityError(self._deserialize_message())
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError("{}: TensorRT could not create an execution context (out of GPU "
                              "memory? close other GPU programs)".format(self.path))
        tensors = trt_compat.io_tensors(self._engine, trt)
        inputs = [t for t in tensors if t.is_input]
        outputs = [t for t in tensors if not t.is_input]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineLoadError("{} has inputs {} and outputs {}; a cvnet engine has one of each "
                                  "(images -> embeddings)".format(
                                      self.path, [t.name for t in inputs],
                                      [t.name for t in outputs]))
        source, target = inputs[0], outputs[0]
        if any(d < 0 for d in source.shape[1:]) or any(d < 0 for d in target.shape[1:]):
            raise EngineLoadError("{}: only the batch axis may be dynamic; input {} output {}; "
                                  "export with a fixed image size".format(
                                      self.path, source.shape, target.shape))
        self._dynamic = source.shape[0] < 0
        if self._dynamic:
            low, _, high = trt_compat.profile_shapes(self._engine, source, 0)
            batch_range = (low[0], high[0])
            if not trt_compat.set_input_shape(self._context, source, high):
                raise EngineLoadError("{}: TensorRT rejects its own profile's largest input "
                                      "shape {}; rebuild it with cvnet-build".format(self.path,
                                                                                     high))
        else:
            batch_range = (source.shape[0], source.shape[0])
        largest = trt_compat.context_shape(self._context, target)
        if any(d < 0 for d in largest):
            raise EngineLoadError("{}: TensorRT reports output {} shape {} for the largest "
                                  "batch; a cvnet engine's output is (batch, D)".format(
                                      self.path, target.name, largest))
        self._host_input = cuda.pagelocked_empty((batch_range[1],) + source.shape[1:],
                                                 source.dtype)
        self._host_output = cuda.pagelocked_empty(int(np.prod(largest)), target.dtype)
        self._tensors, self._source, self._target = tensors, source, target
        self._device_buffers = [
            cuda.mem_alloc(self._host_input.nbytes if t.is_input else self._host_output.nbytes)
            for t in tensors]
        self._stream = cuda.Stream()
        return ModelIO(input_name=source.name,
                       input_shape=(None,) + source.shape[1:] if self._dynamic else source.shape,
                       input_dtype=_host_dtype(source.dtype).name, output_name=target.name,
                       output_shape=target.shape, batch_range=batch_range)

    def _deserialize_message(self) -> str:
        here = "TensorRT {} on {}".format(
            self.tensorrt_version,
            "{} (compute capability {})".format(self.gpu.name, self.gpu.compute_capability)
            if self.gpu else "GPU {}".format(self._device))
        info = self.engine_info
        if info is not None:
            built = "the sidecar says it was built with TensorRT {} on {} (compute capability " \
                    "{})".format(info.tensorrt_version, info.gpu_name, info.compute_capability)
        else:
            built = "it has no sidecar saying what built it"
        said = self._logger.complaints[-3:] if self._logger is not None else []
        return ("{}: {} could not deserialise it ({}); {}. The file is corrupt or was built by "
                "another TensorRT release or GPU: rebuild with cvnet-build on this "
                "machine".format(self.path, here, "TensorRT said: " + " | ".join(said) if said
                                 else "TensorRT gave no reason", built))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        cuda, stream, context = self._cuda, self._stream, self._context
        source, target = self._source, self._target
        count = len(batch)
        if self._dynamic and not trt_compat.set_input_shape(context, source, batch.shape):
            raise EngineInputError("TensorRT rejected input shape {} (the engine's profile runs "
                                   "batches {}:{})".format(batch.shape, self.spec.batch_min,
                                                           self.spec.batch_max))
        shape = trt_compat.context_shape(context, target)
        if len(shape) != 2 or shape[0] != count or int(np.prod(shape)) > self._host_output.size:
            raise EngineError("{}: for a batch of {} TensorRT reports output {} of shape {}; a "
                              "cvnet engine gives ({}, D), one embedding per image (is this a "
                              "cvnet engine?)".format(self.path, count, target.name, shape,
                                                      count))
        host_input = self._host_input[:count]
        np.copyto(host_input, batch, casting="same_kind")  # float32 -> float16 for FP16 input
        host_output = self._host_output[:int(np.prod(shape))].reshape(shape)
        buffers = dict(zip((t.name for t in self._tensors), self._device_buffers))
        cuda.memcpy_htod_async(buffers[source.name], host_input, stream)
        try:
            queued = trt_compat.execute(context, self._tensors,
                                        [int(buffer) for buffer in self._device_buffers],
                                        stream.handle)
            if queued:
                cuda.memcpy_dtoh_async(host_output, buffers[target.name], stream)
        finally:
            stream.synchronize()  # nothing may be freed or reused while the stream runs
        if not queued:
            raise EngineError("{}: TensorRT failed to enqueue a batch of {} (its log above says "
                              "why)".format(self.path, count))
        return host_output.astype(np.float32)

    def _deactivate(self) -> None:
        self._release()

    def _release(self) -> None:
        """Synchronises, frees TensorRT objects and buffers, then pops and releases the context."""
        if self._stream is not None:
            try:
                self._stream.synchronize()
            except self._cuda.Error as err:
                logger.warning("%s: synchronising the CUDA stream at shutdown failed: %s",
                               self.path, err)
        self._context = None  # dropping the last reference destroys the TensorRT object
        self._engine = None
        self._runtime = None
        self._stream = None
        for buffer in self._device_buffers:
            buffer.free()
        self._device_buffers = []
        self._host_input = None
        self._host_output = None
        if self._cuda_context is not None:
            from pycuda.tools import clear_context_caches

            release_pycuda_context(self._cuda_context)
            self._cuda_context = None
            clear_context_caches()
        self._reset()


def _host_dtype(dtype: np.dtype) -> np.dtype:
    """What the runner takes and returns for an engine tensor of ``dtype``: FP16 as float32."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)
