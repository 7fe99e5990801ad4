"""PyTorch inference: the ``.pt`` runner and the in-memory embedder, over one forward path.

Host side (imports torch). Two ways in, one way through the model:

- :class:`TorchRunner` opens a ``.pt`` checkpoint (cvnet-train's, or a plain state_dict) as a
  :class:`cvnet.engines.base.Runner`, the reference the other backends are compared with. The
  host install registers it for ``.pt``/``.pth`` files (entry-point group ``cvnet.runners`` in
  pyproject.toml), so :func:`cvnet.engines.open_engine`, ``cvnet-eval``, ``cvnet-bench`` and
  ``cvnet-embed`` open checkpoints without device-side code ever importing this module. The
  checkpoint is read with ``weights_only=True``
  (:func:`cvnet.models.checkpoint.model_from_checkpoint`).
- :class:`TorchEmbedder` wraps a model already in memory (training's periodic evaluation).

Both feed the model through :mod:`cvnet.core.preprocess` (the one preprocessing path) and
:func:`forward_batch`. On CUDA the runner is fast by default: channels-last weights and inputs,
cuDNN autotuning and one CUDA graph per batch-size bucket replayed for every batch
(:class:`cvnet.models.graphed.GraphedModel`); its ``backend`` then reads ``pytorch-graphs``.
``cuda_graphs=False`` runs plain eager PyTorch (``pytorch``), as on the CPU.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError
from cvnet.core.preprocess import DEFAULT_SIZE, PreprocessConfig, preprocess_batch
from cvnet.models.threads import adapt_torch_threads, configure_torch
from cvnet.engines import host_runner_fix
from cvnet.engines.base import Runner
from cvnet.engines.errors import EngineInputError
from cvnet.engines.spec import InputSpec, ModelIO
from cvnet.models.checkpoint import model_from_checkpoint
from cvnet.models.device import resolve_device
from cvnet.models.graphed import GraphedModel

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def forward_batch(model: nn.Module, batch: np.ndarray, *, device: Any,
                  half: bool = False) -> np.ndarray:
    """One eager forward pass of a preprocessed batch.

    Args:
        model: An eval-mode model returning (N, D) embeddings, on ``device``.
        batch: (N, 3, H, W) float32, normalised (:func:`cvnet.core.preprocess.preprocess_batch`).
        device: Where the model is.
        half: Cast the input to FP16 (a model converted with ``.half()``).

    Returns:
        (N, D) float32 embeddings on the host, not L2-normalised.
    """
    with torch.inference_mode():
        tensor = torch.from_numpy(batch).to(device)
        return model(tensor.half() if half else tensor).float().cpu().numpy()


class TorchEmbedder(object):
    """Turns decoded images into embeddings with an eval-mode PyTorch model in memory.

    Args:
        model: A model whose eval-mode forward returns (B, D) embeddings; it is put in eval
            mode on ``device``.
        config: Input size and normalisation (must match the model's training).
        device: Torch device to run on.
        batch_size: Images per forward pass.
    """

    def __init__(self, model: nn.Module, *, config: PreprocessConfig = PreprocessConfig(),
                 device: str = "cpu", batch_size: int = 32):
        self.model = model.to(device).eval()
        self.config, self.device, self.batch_size = config, torch.device(device), batch_size

    def __call__(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(H, W, 3) uint8 BGR images of any size -> (N, D) float32 embeddings, not normalised."""
        chunks = []
        for start in range(0, len(images_bgr), self.batch_size):
            batch = preprocess_batch(images_bgr[start:start + self.batch_size], self.config)
            chunks.append(forward_batch(self.model, batch, device=self.device))
        if not chunks:
            raise ValueError("no images to embed")
        return np.concatenate(chunks)


class TorchRunner(Runner):
    """Runs a cvnet checkpoint (or a plain state_dict) with PyTorch, in eval mode.

    Args:
        path: The ``.pt`` file.
        arch: Registered model name; required for a plain state_dict.
        model_kwargs: Constructor options on top of the checkpoint's.
        input_size: (height, width) in pixels; by default the ``img_size`` a cvnet-train
            checkpoint records, else 256x256.
        device: ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or
            a torch device string such as ``"cuda:1"``.
        half: Run the model in FP16 (inputs are cast on the device; a GPU option). The
            overflow-prone channel attention still computes in FP32 inside.
        cuda_graphs: On CUDA, replay CUDA graphs (with channels-last and cuDNN autotuning);
            default on for CUDA devices. False runs eager. Not available on the CPU.
        threads: CPU threads; None lets :func:`cvnet.models.threads.configure_torch` decide.
        **kwargs: See :class:`cvnet.engines.base.Runner` (``normalize``, ``batch_range``).

    Raises:
        EngineInputError: ``cuda_graphs=True`` on a device that is not CUDA.
        ConfigError: On activation, when ``device`` is CUDA and torch sees no GPU.
    """

    backend = "pytorch"
    kind = "a PyTorch checkpoint"

    def __init__(self, path: str, *, arch: Optional[str] = None,
                 model_kwargs: Optional[Dict[str, Any]] = None,
                 input_size: Optional[Tuple[int, int]] = None, device: str = "cpu",
                 half: bool = False, cuda_graphs: Optional[bool] = None,
                 threads: Optional[int] = None, **kwargs: Any):
        super().__init__(path, **kwargs)
        if device == "auto":
            device = str(resolve_device(device))
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
        self._model = None
        self._graphed = None  # the GraphedModel, made at the first batch (it needs the spec)
        self._cudnn_benchmark = None  # the setting to restore on deactivation

    def _read_sidecar(self) -> None:
        return None  # a checkpoint has none; the spec comes from the model and input_size

    def _warn_without_metadata(self, spec: InputSpec, io: ModelIO) -> None:
        pass  # expected for checkpoints: size from input_size, ImageNet mean/std as in training

    def _activate(self) -> ModelIO:
        self._require("torch", host_runner_fix(self.path))  # importable here, now
        if str(self._device).startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("{}: device {}, but torch {} sees no CUDA GPU; use the CPU "
                              "(--device cpu)".format(self.path, self._device, torch.__version__))
        gpu = self._gpu()
        if gpu is not None and gpu.index is not None and gpu.index >= torch.cuda.device_count():
            raise ConfigError("{}: device {}, but torch sees {} GPU(s) (cuda:0 to cuda:{}); "
                              "pick one of those".format(self.path, self._device,
                                                         torch.cuda.device_count(),
                                                         torch.cuda.device_count() - 1))
        configure_torch(torch, self._threads)
        model, checkpoint = model_from_checkpoint(self.path, arch=self._arch,
                                                  model_kwargs=self._model_kwargs)
        model = model.to(self._device).eval()
        model = model.half() if self._half else model
        if self._graphs:
            model = model.to(memory_format=torch.channels_last)
            self._cudnn_benchmark = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True  # autotuned while each graph warms up
        if self._gpu() is not None:
            torch.cuda.reset_peak_memory_stats(self._gpu())
        self._model = model
        if self._input_size is None:
            trained = checkpoint.config.get("img_size")
            self._input_size = (int(trained), int(trained)) if trained else DEFAULT_SIZE
        height, width = self._input_size
        return ModelIO(input_name=INPUT_NAME, input_shape=(None, 3, height, width),
                       input_dtype="float32", output_name=OUTPUT_NAME,
                       output_shape=(None, getattr(model, "embedding_dim", None)))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        adapt_torch_threads()
        if not self._graphs:
            return forward_batch(self._model, batch, device=self._device, half=self._half)
        with torch.inference_mode():
            return self._graphed_model()(torch.from_numpy(batch)).float().cpu().numpy()

    def _graphed_model(self) -> GraphedModel:
        if self._graphed is None:
            spec = self.spec
            self._graphed = GraphedModel(
                self._model, sample_shape=spec.batch_shape(1)[1:], max_batch=spec.batch_max,
                device=self._device, channels_last=True,
                dtype=torch.float16 if self._half else torch.float32)
        return self._graphed

    def _gpu(self) -> Optional["torch.device"]:
        """The runner's CUDA device (``cuda:1`` stays GPU 1), or None on the CPU.

        Every ``torch.cuda`` call of the runner names it: without a device they act on the
        thread's current GPU, which need not be this one.
        """
        return torch.device(self._device) if str(self._device).startswith("cuda") else None

    def synchronize(self) -> None:
        """Waits for the runner GPU's queued kernels (nothing on the CPU)."""
        if self._gpu() is not None:
            torch.cuda.synchronize(self._gpu())

    def peak_gpu_memory_mb(self) -> Optional[float]:
        """Peak GPU memory PyTorch allocated on the runner's GPU since activation, MiB; None on
        the CPU."""
        if self._gpu() is None:
            return None
        return round(torch.cuda.max_memory_allocated(self._gpu()) / 2**20, 1)

    def _deactivate(self) -> None:
        self._graphed = None
        self._model = None
        if self._cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self._cudnn_benchmark
            self._cudnn_benchmark = None
