"""StarNet-S1 (Ma et al., "Rewrite the Stars", CVPR 2024) + the "+ CH" ReID head.

Follows ``ma-xu/Rewrite-the-Stars`` (``imagenet/starnet.py``): a 3x3 stride-2 conv stem (32
channels, ReLU6), four stages of widths 24 * 2^i, each a 3x3 stride-2 conv + BN downsampler and
star blocks (depthwise 7x7 + BN; two 1x1 convs to 4x width multiplied as ReLU6(f1) * f2; 1x1
conv + BN back; depthwise 7x7; residual), then BN, global average pooling and the ImageNet FC.
S1: depths 2, 2, 8, 3; final width 192. The convolutions have biases, as in the repository.

Parameters: backbone with its final BN 2,676,168 + ImageNet FC 192 * 1000 + 1000 = 2,869,168
(the published 2.9M) + BNNeck 2,000 + classifier 1000 * 391 = 3,262,168 (3.3M); the paper lists
3.2M (+1.9%). See :class:`cvnet.models.baselines.common.ClassificationHead` for the head.
"""

from typing import Sequence

import torch
import torch.nn as nn

from cvnet.models.baselines.common import CVPAIR_TRAIN_IDS, IMAGENET_CLASSES, ClassifiedBackbone
from cvnet.models.layers import ConvBnAct
from cvnet.models.registry import register_model


class StarBlock(nn.Module):
    """Star block: (B, dim, H, W) -> (B, dim, H, W)."""

    def __init__(self, dim: int, *, mlp_ratio: int = 4):
        super().__init__()
        hidden = mlp_ratio * dim
        self.dwconv = ConvBnAct(dim, dim, 7, groups=dim, bias=True, act=False)
        self.f1 = nn.Conv2d(dim, hidden, 1)
        self.f2 = nn.Conv2d(dim, hidden, 1)
        self.g = ConvBnAct(hidden, dim, 1, bias=True, act=False)
        self.dwconv2 = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x)
        y = self.act(self.f1(y)) * self.f2(y)  # the "star" operation
        return x + self.dwconv2(self.g(y))


class StarNet(ClassifiedBackbone):
    """StarNet backbone + "+ CH" head; forward as :class:`ClassifiedBackbone` (1000-d embedding).

    Args:
        num_classes, feature_dim: Classifier and FC widths, see :class:`ClassifiedBackbone`.
        base_dim: Width of stage 1; stage i has ``base_dim * 2**i``.
        depths: Star blocks per stage.
        mlp_ratio: Expansion of the star operation.
        stem_channels: Stem width [32].
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS,
                 feature_dim: int = IMAGENET_CLASSES, base_dim: int = 24,
                 depths: Sequence[int] = (2, 2, 8, 3), mlp_ratio: int = 4, stem_channels: int = 32):
        super().__init__()
        self.stem = nn.Sequential(ConvBnAct(3, stem_channels, 3, stride=2, bias=True, act=False),
                                  nn.ReLU6())
        stages, in_ch = [], stem_channels
        for i, depth in enumerate(depths):
            dim = base_dim * 2 ** i
            stages.append(nn.Sequential(
                ConvBnAct(in_ch, dim, 3, stride=2, bias=True, act=False),
                *[StarBlock(dim, mlp_ratio=mlp_ratio) for _ in range(depth)]))
            in_ch = dim
        self.stages = nn.ModuleList(stages)
        self.norm = nn.BatchNorm2d(in_ch)
        self.add_head(in_ch, feature_dim=feature_dim, num_classes=num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x).mean(dim=(2, 3))  # (B, 192) for S1


@register_model
def starnet_s1(**kwargs) -> StarNet:
    """Table 2 StarNet-S1 + CH: ImageNet StarNet-S1 and a BNNeck head, 1000-d embedding, ~3.3M."""
    return StarNet(**kwargs)
