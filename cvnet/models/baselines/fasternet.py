"""FasterNet-T1 (Chen et al., "Run, Don't Walk", CVPR 2023) + the "+ CH" ReID head.

Follows ``JierunChen/FasterNet`` (``models/fasternet.py`` with ``cfg/fasternet_t1.yaml``): a
4x4 stride-4 patch embedding (conv + BN) to 64 channels; four stages of 1, 2, 8 and 2 FasterNet
blocks at widths 64, 128, 256, 512, separated by 2x2 stride-2 merging convs + BN; a block is a
partial 3x3 conv on a quarter of the channels (the rest pass untouched) followed by a 1x1 conv to
2x width, BN, GELU and a 1x1 conv back, with a residual. Then global average pooling, a 1x1 conv
to 1280 features + GELU and the ImageNet FC. T1 uses GELU; its convs have no biases.

Parameters: backbone to the 1280-d pre-logits 6,314,368 + ImageNet FC 1280 * 1000 + 1000 =
7,595,368 (the published 7.6M) + BNNeck 2,000 + classifier 1000 * 391 = 7,988,368 (8.0M); the
paper lists 7.9M (+1.1%). See :class:`cvnet.models.baselines.common.ClassificationHead`.
"""

from typing import Sequence

import torch
import torch.nn as nn

from cvnet.models.baselines.common import (CVPAIR_TRAIN_IDS, IMAGENET_CLASSES, ClassifiedBackbone,
                                           trunc_normal_init)
from cvnet.models.registry import register_model


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Non-overlapping ``kernel_size`` x ``kernel_size`` conv with the same stride, then BN."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride=kernel_size,
                                   bias=False), nn.BatchNorm2d(out_channels))


class PartialConv(nn.Module):
    """3x3 conv on the first ``dim // n_div`` channels; the others pass through. Shape kept."""

    def __init__(self, dim: int, *, n_div: int = 4):
        super().__init__()
        self.split = (dim // n_div, dim - dim // n_div)
        self.conv = nn.Conv2d(self.split[0], self.split[0], 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        touched, untouched = torch.split(x, self.split, dim=1)
        return torch.cat([self.conv(touched), untouched], dim=1)


class FasterBlock(nn.Module):
    """Partial conv + inverted-bottleneck MLP with a residual: (B, dim, H, W) -> same."""

    def __init__(self, dim: int, *, mlp_ratio: float = 2.0, n_div: int = 4):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.spatial_mixing = PartialConv(dim, n_div=n_div)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                 nn.GELU(), nn.Conv2d(hidden, dim, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.spatial_mixing(x))


class FasterNet(ClassifiedBackbone):
    """FasterNet backbone + "+ CH" head; forward as :class:`ClassifiedBackbone` (1000-d embedding).

    Args:
        num_classes, feature_dim: Classifier and FC widths, see :class:`ClassifiedBackbone`.
        embed_dim: Width of stage 1; stage i has ``embed_dim * 2**i`` [T1: 64].
        depths: Blocks per stage [T1: 1, 2, 8, 2].
        mlp_ratio: Expansion of the blocks' MLP [2].
        n_div: 1 / fraction of channels the partial conv touches [4].
        pre_logits_dim: Width of the 1x1 conv after pooling [1280].
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS,
                 feature_dim: int = IMAGENET_CLASSES, embed_dim: int = 64,
                 depths: Sequence[int] = (1, 2, 8, 2), mlp_ratio: float = 2.0, n_div: int = 4,
                 pre_logits_dim: int = 1280):
        super().__init__()
        self.stem = _conv_bn(3, embed_dim, 4)
        stages = []
        for i, depth in enumerate(depths):
            dim = embed_dim * 2 ** i
            merge = [_conv_bn(dim // 2, dim, 2)] if i > 0 else []
            stages.append(nn.Sequential(*merge, *[FasterBlock(dim, mlp_ratio=mlp_ratio,
                                                              n_div=n_div) for _ in range(depth)]))
        self.stages = nn.ModuleList(stages)
        self.pre_logits = nn.Sequential(nn.Conv2d(dim, pre_logits_dim, 1, bias=False), nn.GELU())
        trunc_normal_init(self)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
        self.add_head(pre_logits_dim, feature_dim=feature_dim, num_classes=num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pre_logits(x.mean(dim=(2, 3), keepdim=True)).flatten(1)  # (B, 1280)


@register_model
def fasternet_t1(**kwargs) -> FasterNet:
    """Table 2 FasterNet-T1 + CH: ImageNet FasterNet-T1 and a BNNeck head, 1000-d, ~8.0M."""
    return FasterNet(**kwargs)
