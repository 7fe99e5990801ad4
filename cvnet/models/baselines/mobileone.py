"""MobileOne-S1 (Vasu et al., CVPR 2023) + the "+ CH" ReID head.

Follows ``apple/ml-mobileone`` (``mobileone.py``): a 3x3 stride-2 stem block to 64 channels,
then four stages of 2, 8, 10 and 1 blocks at widths 64, 128, 256, 512 times (1.5, 1.5, 2.0, 2.5)
for S1 (96, 192, 512, 1280); each block is a depthwise 3x3 MobileOne block followed by a
pointwise one, the first of each stage with stride 2; then global average pooling and the
ImageNet FC. A MobileOne block trains with several branches -- ``num_branches`` k x k conv +
BN, a 1x1 conv + BN "scale" branch when k > 1, a BN "skip" branch when the shape is kept -- and
is re-parameterised for inference into one k x k conv with a bias
(:meth:`MobileOne.reparameterize`).

Which form Table 2 counts: the inference form. MobileOne's published S1 size, 4.8M, is the
re-parameterised model with its 1000-way FC (3,483,840 + 1,281,000 = 4,764,840); the
training form holds 4,825,192 with it. The paper's 5.1M is 4.8M + 0.3M, the offset every
"+ CH" model shows (see :class:`cvnet.models.baselines.common.ClassificationHead`). So
``mobileone_s1`` builds the re-parameterised network by default: 4,764,840 + BNNeck 2,000 +
classifier 1000 * 391 = 5,157,840 (5.2M, +1.1%). ``reparameterized=False`` builds the training
form (5,218,192 parameters), which :meth:`MobileOne.reparameterize` turns into the same
5,157,840-parameter network, output unchanged.
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvnet.models.baselines.common import CVPAIR_TRAIN_IDS, IMAGENET_CLASSES, ClassifiedBackbone
from cvnet.models.layers import ConvBnAct, init_weights
from cvnet.models.registry import register_model

_Kernel = Tuple[torch.Tensor, torch.Tensor]


def _fuse_bn(conv_weight: Optional[torch.Tensor], bn: nn.BatchNorm2d, identity_shape) -> _Kernel:
    """Kernel and bias of ``bn(conv(x))``, or of ``bn(x)`` as an identity kernel (no conv)."""
    if conv_weight is None:
        out_channels, in_per_group, k, _ = identity_shape
        conv_weight = torch.zeros(identity_shape)
        for i in range(out_channels):
            conv_weight[i, i % in_per_group, k // 2, k // 2] = 1.0
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return conv_weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class MobileOneBlock(nn.Module):
    """A MobileOne block: (B, in, H, W) -> (B, out, H / stride, W / stride), then ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: 3 (depthwise blocks, stem) or 1 (pointwise blocks).
        stride: Stride.
        groups: Convolution groups (``in_channels`` for depthwise blocks).
        num_branches: k x k conv branches of the training form [S1: 1].
        reparameterized: Build the inference form (one conv with bias) directly.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, num_branches: int = 1, reparameterized: bool = True):
        super().__init__()
        self.shape = (in_channels, out_channels, kernel_size, stride, groups)
        self.act = nn.ReLU(inplace=True)
        if reparameterized:
            self.reparam_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                          padding=kernel_size // 2, groups=groups)
            return
        self.reparam_conv = None
        self.skip = (nn.BatchNorm2d(in_channels)
                     if in_channels == out_channels and stride == 1 else None)
        self.scale = (ConvBnAct(in_channels, out_channels, 1, stride=stride, groups=groups,
                                act=False) if kernel_size > 1 else None)
        self.convs = nn.ModuleList(
            ConvBnAct(in_channels, out_channels, kernel_size, stride=stride, groups=groups,
                      act=False) for _ in range(num_branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.act(self.reparam_conv(x))
        out = sum(conv(x) for conv in self.convs)
        if self.scale is not None:
            out = out + self.scale(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return self.act(out)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuses the branches into one conv with bias (uses the BN running statistics)."""
        if self.reparam_conv is not None:
            return
        in_channels, out_channels, k, stride, groups = self.shape
        full = (out_channels, in_channels // groups, k, k)
        kernel, bias = torch.zeros(full), torch.zeros(out_channels)
        branches = [(conv[0].weight, conv[1]) for conv in self.convs]
        if self.scale is not None:
            pad = k // 2
            branches.append((F.pad(self.scale[0].weight, [pad] * 4), self.scale[1]))
        if self.skip is not None:
            branches.append((None, self.skip))
        for weight, bn in branches:
            w, b = _fuse_bn(weight, bn, full)
            kernel += w
            bias += b
        self.reparam_conv = nn.Conv2d(in_channels, out_channels, k, stride=stride, padding=k // 2,
                                      groups=groups)
        self.reparam_conv.weight.copy_(kernel)
        self.reparam_conv.bias.copy_(bias)
        del self.skip, self.scale, self.convs


class MobileOne(ClassifiedBackbone):
    """MobileOne backbone + "+ CH" head; forward as :class:`ClassifiedBackbone` (1000-d embedding).

    Args:
        num_classes, feature_dim: Classifier and FC widths, see :class:`ClassifiedBackbone`.
        width_multipliers: Multipliers of the stage widths 64, 128, 256, 512 [S1: 1.5, 1.5, 2, 2.5].
        depths: Blocks per stage [2, 8, 10, 1].
        num_branches: Conv branches of the training form [S1: 1; S0: 4].
        reparameterized: Build the inference form (the default, what Table 2 counts).
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS,
                 feature_dim: int = IMAGENET_CLASSES,
                 width_multipliers: Sequence[float] = (1.5, 1.5, 2.0, 2.5),
                 depths: Sequence[int] = (2, 8, 10, 1), num_branches: int = 1,
                 reparameterized: bool = True):
        super().__init__()
        opts = {"num_branches": num_branches, "reparameterized": reparameterized}
        in_ch = min(64, int(64 * width_multipliers[0]))
        self.stem = MobileOneBlock(3, in_ch, 3, stride=2, **opts)
        stages = []
        for base, multiplier, depth in zip((64, 128, 256, 512), width_multipliers, depths):
            width, blocks = int(base * multiplier), []
            for i in range(depth):
                blocks += [MobileOneBlock(in_ch, in_ch, 3, stride=2 if i == 0 else 1,
                                          groups=in_ch, **opts),
                           MobileOneBlock(in_ch, width, 1, **opts)]
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        init_weights(self)
        self.add_head(in_ch, feature_dim=feature_dim, num_classes=num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))  # (B, 1280) for S1

    def reparameterize(self) -> "MobileOne":
        """Turns every block into its inference form in place (call in eval mode); returns self."""
        for module in self.modules():
            if isinstance(module, MobileOneBlock):
                module.reparameterize()
        return self


@register_model
def mobileone_s1(**kwargs) -> MobileOne:
    """Table 2 MobileOne-S1 + CH: re-parameterised MobileOne-S1 and a BNNeck head, 1000-d, ~5.2M."""
    return MobileOne(**kwargs)
