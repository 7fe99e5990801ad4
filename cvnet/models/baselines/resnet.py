"""ResNet-50 (He et al. 2016, torchvision's v1.5 layout), the backbone of PPLR, MGN and BoT.

Stem (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max pool) then four stages of 3, 4, 6 and 3
bottlenecks with outputs 256, 512, 1024 and 2048 channels, the stride on each stage's first 3x3
conv. 23,508,032 parameters without the ImageNet FC. The ReID methods set the last stage's
stride to 1, so a 256x256 image gives a 2048x16x16 map instead of 2048x8x8.
"""

from typing import Tuple

import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError
from cvnet.models.layers import Bottleneck, init_weights
from cvnet.models.stems import ResNetStem

#: Bottlenecks per stage and stage output channels of ResNet-50.
RESNET50_DEPTHS = (3, 4, 6, 3)
RESNET50_WIDTHS = (256, 512, 1024, 2048)
STEM_CHANNELS = 64


def resnet_stage(in_channels: int, out_channels: int, depth: int, *, stride: int) -> nn.Sequential:
    """``depth`` bottlenecks, the first changing the width and carrying the stride."""
    return nn.Sequential(*[Bottleneck(in_channels if i == 0 else out_channels, out_channels,
                                      stride=stride if i == 0 else 1) for i in range(depth)])


def resnet50_stem() -> ResNetStem:
    """The 7x7 stem: (B, 3, H, W) -> (B, 64, H/4, W/4)."""
    return ResNetStem(3, STEM_CHANNELS)


def resnet50_stages(*, last_stride: int = 1, num_stages: int = 4) -> nn.ModuleList:
    """ResNet-50's first ``num_stages`` stages; (B, 64, H/4, W/4) -> (B, 2048, H/16, W/16).

    Args:
        last_stride: Stride of stage 4 (2 in the ImageNet network, 1 in the ReID methods).
        num_stages: Build only the first stages (MGN branches off inside stage 3).
    """
    strides = (1, 2, 2, last_stride)
    stages, in_ch = [], STEM_CHANNELS
    for depth, width, stride in list(zip(RESNET50_DEPTHS, RESNET50_WIDTHS, strides))[:num_stages]:
        stages.append(resnet_stage(in_ch, width, depth, stride=stride))
        in_ch = width
    return nn.ModuleList(stages)


def feature_size(img_size: Tuple[int, int], last_stride: int) -> Tuple[int, int]:
    """(rows, cols) of the stage-4 map for an ``img_size`` input: 1/16 with last stride 1."""
    stride = 16 * last_stride
    return img_size[0] // stride, img_size[1] // stride


class ResNet50Backbone(nn.Module):
    """ResNet-50's stem and four stages as a model's top-level ``stem`` and ``stages``.

    PPLR and BoT subclass it and add their heads; ``cvnet-summary`` then lists the stem and each
    stage. Initialised like torchvision (Kaiming fan-out convs, unit BatchNorms).

    Args:
        last_stride: Stride of stage 4 (1 for ReID: a 2048 x H/16 x W/16 map).
    """

    def __init__(self, *, last_stride: int = 1):
        super().__init__()
        if last_stride not in (1, 2):
            raise ConfigError(f"last_stride must be 1 or 2, got {last_stride}")
        self.stem = resnet50_stem()
        self.stages = resnet50_stages(last_stride=last_stride)
        self.last_stride = last_stride
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, 2048, H / 16, W / 16) with last stride 1."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x
