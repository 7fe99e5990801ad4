"""FP32 islands: computations that must not run in FP16, whatever precision the model runs in.

Mixed precision (``torch.autocast``) runs matrix products and convolutions in FP16 (or BF16).
FP16 holds magnitudes up to 65504 with 11 significant bits, so a product that sums thousands of
terms overflows to inf or loses the differences a softmax reads:

- the triplet loss's squared distances ``|x|^2 + |y|^2 - 2 x.y`` (768 products of features
  whose standard deviation reaches 60: about 2.8 million),
- the channel attention's energy ``X1 X2^T`` (H*W = 4096 products per entry at stage 1 of a
  256x256 input) and the softmax over it,
- the search cell's mixture, whose architecture gradient sums one product per activation.

Those run inside :func:`float32_region` on FP32 copies of their inputs (:func:`to_float32`),
and their results are cast back to the caller's dtype. The same code runs in FP32 when nothing
is autocast, and in an FP16 model (``model.half()``, the PyTorch runner's FP16 mode), where the
inputs arrive as FP16 tensors. Neither helper records anything in a traced (ONNX-exported)
FP32 graph: both do nothing when autocast is off and the tensor is already FP32.
"""

import contextlib
from typing import Iterator

import torch


def autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is active for ``device_type`` (``"cuda"``, ``"cpu"``...)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return bool(torch.is_autocast_enabled())


@contextlib.contextmanager
def float32_region(tensor: torch.Tensor) -> Iterator[None]:
    """Turns autocast off on ``tensor``'s device for the block (a no-op when it is off).

    Operations inside run in the dtype of their inputs: pass FP32 tensors (:func:`to_float32`)
    to compute in FP32.
    """
    device_type = tensor.device.type
    if autocast_enabled(device_type):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield


def to_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as FP32: itself when it already is, else an FP32 copy (differentiable)."""
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def to_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` cast to ``dtype``; itself when it already has it (nothing traced)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)
