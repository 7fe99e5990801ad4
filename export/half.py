"""An FP16-typed copy of a model for export: FP16 weights and activations, FP32 islands and I/O.

TensorRT 11 removed the builder's FP16 flag: precision comes from the ONNX types. This module
makes the PyTorch model itself half precision before export, so the TorchScript exporter writes
FP16 initializers and operators, with:

- FP32 input and output (one Cast after the input, one before the output), so runtimes and the
  sidecar contract stay float32;
- FP32 islands around modules that overflow in FP16: the channel attention's energy ``X1 X2^T``
  sums up to 4096 products at stage 1 (FP16's max is 65504), so every ``FilterAttention``
  (its MatMul, ReduceMax and Softmax) runs in FP32 between two Casts.
"""

import copy
from typing import Any, Tuple, Type

import torch
import torch.nn as nn

from cvnet.core.errors import ExportError
from cvnet.models.dfc import FilterAttention

#: Module types kept in FP32 inside an FP16 graph.
FP32_MODULES: Tuple[Type[nn.Module], ...] = (FilterAttention,)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Casts the floating-point tensors in a tensor or (nested) tuple/list to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


class Float32Island(nn.Module):
    """Runs ``inner`` in FP32 and casts its outputs back to the dtype of the first input."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any) -> Any:
        first = args[0][0] if isinstance(args[0], (tuple, list)) else args[0]
        return _cast(self.inner(*_cast(args, torch.float32)), first.dtype)


class HalfWithFloatIO(nn.Module):
    """``(N, ...)`` float32 -> FP16 ``model`` -> float32 output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.float16)).to(torch.float32)


def half_for_export(model: nn.Module, *,
                    keep_fp32: Tuple[Type[nn.Module], ...] = FP32_MODULES) -> nn.Module:
    """Returns an FP16 copy of ``model`` with FP32 islands and FP32 I/O (``model`` is unchanged).

    Args:
        model: The FP32 model, in eval mode.
        keep_fp32: Module types wrapped in :class:`Float32Island` and kept in FP32.

    Returns:
        An eval-mode module mapping float32 input to float32 output.

    Raises:
        ExportError: A weight or buffer leaves FP16's range (|x| > 65504) when cast.
    """
    half = copy.deepcopy(model)
    for parent in list(half.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, keep_fp32):
                setattr(parent, name, Float32Island(child))
    half.half()
    for module in half.modules():
        if isinstance(module, Float32Island):
            module.inner.float()
    overflow = [name for name, tensor in list(half.named_parameters()) + list(half.named_buffers())
                if tensor.dtype == torch.float16 and not torch.isfinite(tensor).all()]
    if overflow:
        raise ExportError(f"{len(overflow)} weight tensor(s) exceed FP16's range (|x| > 65504) and "
                          f"would become inf: {', '.join(overflow[:5])}; export with "
                          "--precision fp32")
    return HalfWithFloatIO(half).eval()
