"""PyTorch runner for ``.pt`` checkpoints: the reference the other backends are compared with.

Host only: torch and cvnet's model code are imported when the runner is activated, never at
module level, so this module still imports on the device (where activating it says to use the
.onnx or .plan instead). Images go through the same :mod:`cvnet.core.preprocess` path as every other
backend; the checkpoint is read with ``weights_only=True`` by
:func:`cvnet.models.checkpoint.model_from_checkpoint`.

On CUDA the runner is fast by default: channels-last weights and inputs, cuDNN autotuning and
one CUDA graph per batch-size bucket replayed for every batch
(:class:`cvnet.models.graphed.GraphedModel`); its ``backend`` then reads ``pytorch-graphs``.
``cuda_graphs=False`` runs plain eager PyTorch (``pytorch``), as on the CPU.
"""

from typing import Any, Dict, Optional, Tuple

import numpy as np

from cvnet.core.preprocess import DEFAULT_SIZE
from cvnet.core.threads import adapt_torch_threads, configure_torch
from cvnet.engines.base import InputSpec, ModelIO, Runner
from cvnet.engines.deps import require
from cvnet.engines.errors import EngineInputError

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def import_torch(path: str) -> Any:
    """Imports torch to run the checkpoint ``path``, or refuses naming it and the fix.

    Raises:
        MissingDependencyError: torch cannot be imported (on the device, by design).
    """
    return require("torch", "{}: {}".format(path, TorchRunner.kind), (
        "On the device, export it to ONNX on the host (cvnet-export {} -o model.onnx), copy "
        "model.onnx and model.onnx.json here and pass the .onnx, or the .plan cvnet-build "
        "makes from it. On the host, use an environment with PyTorch (make .venv/.installed)."
        .format(path)))


class TorchRunner(Runner):
    """Runs a cvnet checkpoint (or a plain state_dict) with PyTorch, in eval mode.

    Args:
        path: The ``.pt`` file.
        arch: Registered model name; required for a plain state_dict.
        model_kwargs: Constructor options on top of the checkpoint's.
        input_size: (height, width) in pixels; by default the ``img_size`` a cvnet-train
            checkpoint records, else 256x256.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        half: Run the model in FP16 (inputs are cast on the device; a GPU option). The
            overflow-prone channel attention still computes in FP32 inside.
        cuda_graphs: On CUDA, replay CUDA graphs (with channels-last and cuDNN autotuning);
            default on for CUDA devices. False runs eager. Not available on the CPU.
        threads: CPU threads; None lets :func:`cvnet.core.threads.configure_torch` decide.
        **kwargs: See :class:`cvnet.engines.base.Runner` (``normalize``, ``batch_range``).

    Raises:
        EngineInputError: ``cuda_graphs=True`` on a device that is not CUDA.
    """

    backend = "pytorch"
    kind = "a PyTorch checkpoint"

    def __init__(self, path: str, *, arch: Optional[str] = None,
                 model_kwargs: Optional[Dict[str, Any]] = None,
                 input_size: Optional[Tuple[int, int]] = None, device: str = "cpu",
                 half: bool = False, cuda_graphs: Optional[bool] = None,
                 threads: Optional[int] = None, **kwargs: Any):
        super(TorchRunner, self).__init__(path, **kwargs)
        on_cuda = str(device).startswith("cuda")
        if cuda_graphs and not on_cuda:
            raise EngineInputError("cuda_graphs needs a CUDA device, got device {!r}; leave it "
                                   "off on the CPU".format(device))
        self._graphs = on_cuda and cuda_graphs is not False
        if self._graphs:
            self.backend = "pytorch-graphs"
        self._arch = arch
        self._model_kwargs = dict(model_kwargs or {})
        self._input_size = None if input_size is None else (int(input_size[0]),
                                                            int(input_size[1]))
        self._device = device
        self._half = bool(half)
        self._threads = threads
        self._torch = None
        self._model = None
        self._graphed = None  # the GraphedModel, made at the first batch (it needs the spec)
        self._cudnn_benchmark = None  # the setting to restore on deactivation

    def _read_sidecar(self) -> None:
        return None  # a checkpoint has none; the spec comes from the model and input_size

    def _warn_without_metadata(self, spec: InputSpec, io: ModelIO) -> None:
        pass  # expected for checkpoints: size from input_size, ImageNet mean/std as in training

    def _activate(self) -> ModelIO:
        torch = import_torch(self.path)
        configure_torch(torch, self._threads)
        from cvnet.models.checkpoint import model_from_checkpoint  # torch code: host only

        model, checkpoint = model_from_checkpoint(self.path, arch=self._arch,
                                                  model_kwargs=self._model_kwargs)
        model = model.to(self._device).eval()
        model = model.half() if self._half else model
        if self._graphs:
            model = model.to(memory_format=torch.channels_last)
            self._cudnn_benchmark = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True  # autotuned while each graph warms up
        self._model = model
        self._torch = torch
        if self._input_size is None:
            trained = checkpoint.config.get("img_size")
            self._input_size = (int(trained), int(trained)) if trained else DEFAULT_SIZE
        height, width = self._input_size
        return ModelIO(input_name=INPUT_NAME, input_shape=(None, 3, height, width),
                       input_dtype="float32", output_name=OUTPUT_NAME,
                       output_shape=(None, getattr(model, "embedding_dim", None)))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        adapt_torch_threads()
        with torch.inference_mode():
            if self._graphs:
                out = self._graphed_model()(torch.from_numpy(batch))
            else:
                tensor = torch.from_numpy(batch).to(self._device)
                out = self._model(tensor.half() if self._half else tensor)
        return out.float().cpu().numpy()

    def _graphed_model(self) -> Any:
        if self._graphed is None:
            from cvnet.models.graphed import GraphedModel  # torch code: host only

            spec = self.spec
            self._graphed = GraphedModel(
                self._model, sample_shape=spec.batch_shape(1)[1:], max_batch=spec.batch_max,
                device=self._device, channels_last=True,
                dtype=self._torch.float16 if self._half else self._torch.float32)
        return self._graphed

    def _deactivate(self) -> None:
        self._graphed = None
        self._model = None
        if self._cudnn_benchmark is not None:
            self._torch.backends.cudnn.benchmark = self._cudnn_benchmark
            self._cudnn_benchmark = None
        self._torch = None
