"""Preprocessing inside the graph: the device only decodes and resizes.

:class:`InGraphPreprocess` wraps a model so that the exported graph takes what
:func:`cvnet.core.preprocess.resize_rgb` returns, stacked: ``(N, H, W, 3)`` RGB pixel values 0-255,
as uint8 (TensorRT 8.5 and newer) or float32 (TensorRT 8.2, which has no uint8 inputs). The graph
casts, scales, standardises and changes the layout with the same float32 arithmetic as
:func:`cvnet.core.preprocess.normalize`, so both paths give the same model input.
"""

from typing import Sequence

import torch
import torch.nn as nn

from cvnet.core.preprocess import IMAGENET_MEAN, IMAGENET_STD


class InGraphPreprocess(nn.Module):
    """``(N, H, W, 3)`` RGB 0-255 -> ``model(((x - 255 mean) / (255 std)) as (N, 3, H, W))``.

    Args:
        model: The wrapped model, taking ``(N, 3, H, W)`` normalised float32.
        mean: Per-channel mean, RGB, for images scaled to [0, 1].
        std: Per-channel standard deviation, RGB.
    """

    def __init__(self, model: nn.Module, *, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.model = model
        # float32 constants computed as preprocess.normalize computes them (mean * 255 in float32).
        self.register_buffer("offset", torch.tensor(mean, dtype=torch.float32).mul(255.0)
                             .view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(std, dtype=torch.float32).mul(255.0)
                             .view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Cast before the transpose: TensorRT allows uint8 only on the network input itself.
        if images.dtype != torch.float32:  # decided at trace time: no Cast node for float32
            images = images.to(torch.float32)
        x = images.permute(0, 3, 1, 2)  # (N, 3, H, W) 0-255
        return self.model((x - self.offset) / self.scale)
