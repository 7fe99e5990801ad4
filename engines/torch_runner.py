"""PyTorch runner for ``.pt`` checkpoints: the reference the other backends are compared with.

Host only: torch and cvnet's model code are imported when the runner is activated, never at
module level, so this module still imports on the device (where activating it says to use the
.onnx or .plan instead). Images go through the same :mod:`cvnet.preprocess` path as every other
backend; the checkpoint is read with ``weights_only=True`` by
:func:`cvnet.models.checkpoint.model_from_checkpoint`.
"""

from typing import Any, Dict, Optional, Tuple

import numpy as np

from cvnet.preprocess import DEFAULT_SIZE
from cvnet.threads import adapt_torch_threads, configure_torch
from engines.base import InputSpec, ModelIO, Runner
from engines.deps import require

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


class TorchRunner(Runner):
    """Runs a cvnet checkpoint (or a plain state_dict) with PyTorch, in eval mode.

    Args:
        path: The ``.pt`` file.
        arch: Registered model name; required for a plain state_dict.
        model_kwargs: Constructor options on top of the checkpoint's.
        input_size: (height, width) in pixels; by default the ``img_size`` a cvnet-train
            checkpoint records, else 256x256.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        half: Run the model in FP16 (inputs are cast on the device; a GPU option).
        threads: CPU threads; None lets :func:`cvnet.threads.configure_torch` decide.
        **kwargs: See :class:`engines.base.Runner` (``normalize``, ``batch_range``).
    """

    backend = "pytorch"

    def __init__(self, path: str, *, arch: Optional[str] = None,
                 model_kwargs: Optional[Dict[str, Any]] = None,
                 input_size: Optional[Tuple[int, int]] = None, device: str = "cpu",
                 half: bool = False, threads: Optional[int] = None, **kwargs: Any):
        super(TorchRunner, self).__init__(path, **kwargs)
        self._arch = arch
        self._model_kwargs = dict(model_kwargs or {})
        self._input_size = None if input_size is None else (int(input_size[0]),
                                                            int(input_size[1]))
        self._device = device
        self._half = bool(half)
        self._threads = threads
        self._torch = None
        self._model = None

    def _read_sidecar(self) -> None:
        return None  # a checkpoint has none; the spec comes from the model and input_size

    def _warn_without_metadata(self, spec: InputSpec, io: ModelIO) -> None:
        pass  # expected for checkpoints: size from input_size, ImageNet mean/std as in training

    def _activate(self) -> ModelIO:
        torch = require("torch", "the .pt runner")
        configure_torch(torch, self._threads)
        from cvnet.models.checkpoint import model_from_checkpoint  # torch code: host only

        model, checkpoint = model_from_checkpoint(self.path, arch=self._arch,
                                                  model_kwargs=self._model_kwargs)
        model = model.to(self._device).eval()
        self._model = model.half() if self._half else model
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
            tensor = torch.from_numpy(batch).to(self._device)
            out = self._model(tensor.half() if self._half else tensor)
        return out.float().cpu().numpy()

    def _deactivate(self) -> None:
        self._model = None
        self._torch = None
