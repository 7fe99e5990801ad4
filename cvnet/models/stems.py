"""Stems: the paper's multi-scale localization (MSL) module and the ResNet 7x7 stem it replaces.

Both map an image (B, 3, H, W) to (B, out_channels, H/4, W/4): (B, 64, 64, 64) at 256x256.
"""

import torch
import torch.nn as nn

from cvnet.models.layers import ConvBnAct


class LocalizationAttention(nn.Module):
    """Weight-free channel attention of the MSL: ``z * sigmoid(mean_over_HW(z))``, shape kept."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.sigmoid(z.mean(dim=(2, 3), keepdim=True))


class MSLStem(nn.Module):
    """Multi-scale localization stem (paper section 4.2), about 0.10M parameters.

    3x3 stride-2 conv; three branches on its output (1x1 pointwise, depthwise 3x3 + pointwise,
    identity) concatenated; localization attention; 3x3 stride-2 max pool; two 3x3 convs with a
    1x1 projection shortcut.

    Args:
        in_channels: Image channels.
        out_channels: Output channels (64 in the paper's layout).
        branch_channels: Width of the first conv and of each branch [choice: 32].
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, *, branch_channels: int = 32):
        super().__init__()
        c = branch_channels
        self.conv = ConvBnAct(in_channels, c, 3, stride=2)
        self.pointwise = ConvBnAct(c, c, 1)
        self.depthwise = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
            ConvBnAct(c, c, 1),
        )
        self.attention = LocalizationAttention()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.body = nn.Sequential(
            ConvBnAct(3 * c, out_channels, 3),
            ConvBnAct(out_channels, out_channels, 3, act=False),
        )
        self.shortcut = ConvBnAct(3 * c, out_channels, 1, act=False)
        self.act = nn.ReLU(inplace=True)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, c, H/2, W/2)
        z = torch.cat([self.pointwise(x), self.depthwise(x), x], dim=1)  # (B, 3c, H/2, W/2)
        z = self.pool(self.attention(z))  # (B, 3c, H/4, W/4)
        return self.act(self.body(z) + self.shortcut(z))


class ResNetStem(nn.Sequential):
    """ResNet-50's stem (the paper's "Res. 1" ablation): 7x7 stride-2 conv, BN, ReLU, max pool."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64):
        super().__init__(
            ConvBnAct(in_channels, out_channels, 7, stride=2),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.out_channels = out_channels
