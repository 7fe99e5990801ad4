"""Small convolution blocks shared by CVNet's stems and stages and by the Table 2 baselines."""

import torch
import torch.nn as nn


class ConvBnAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> optional ReLU; spatial size kept unless ``stride > 1``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size; padding is ``kernel_size // 2``.
        stride: Convolution stride.
        groups: Convolution groups (``in_channels`` for a depthwise conv).
        act: Apply ReLU after the BatchNorm.
        bias: Give the convolution a bias (StarNet's convs have one even before a BatchNorm).
        norm: Apply the BatchNorm.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *,
                 stride: int = 1, groups: int = 1, act: bool = True, bias: bool = False,
                 norm: bool = True):
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                            padding=kernel_size // 2, groups=groups, bias=bias)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class LightConv(nn.Sequential):
    """The paper's LConv: 1x1 conv (no bias) -> depthwise 3x3 conv -> BatchNorm -> ReLU.

    Maps (B, C, H, W) to (B, C, H, W) with C*C + 9*C conv weights.
    """

    def __init__(self, channels: int):
        super().__init__(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1, 3x3 (carrying the stride, as torchvision's), 1x1 convs + shortcut.

    (B, in_channels, H, W) -> (B, out_channels, H / stride, W / stride), inner width
    ``out_channels // mid_ratio``; the shortcut is a strided 1x1 conv + BN where the shape changes.
    CVNet's "Res. S" ablation uses it with stride 1; ResNet-50 (the PPLR, MGN and BoT baselines)
    is built from it.
    """

    def __init__(self, in_channels: int, out_channels: int, *, mid_ratio: int = 4, stride: int = 1):
        super().__init__()
        mid = out_channels // mid_ratio
        self.body = nn.Sequential(
            ConvBnAct(in_channels, mid, 1),
            ConvBnAct(mid, mid, 3, stride=stride),
            ConvBnAct(mid, out_channels, 1, act=False),
        )
        self.shortcut = (nn.Identity() if in_channels == out_channels and stride == 1
                         else ConvBnAct(in_channels, out_channels, 1, stride=stride, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Transition(nn.Sequential):
    """Between stages: 1x1 ConvBnAct then 2x2 average pooling, (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__(ConvBnAct(channels, channels, 1), nn.AvgPool2d(2, stride=2))


def init_weights(module: nn.Module) -> None:
    """Initialises a model the way MSINet does (Kaiming fan-out convs, unit BN, small linears)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def channel_mean_max(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel mean and max over channels: (B, C, H, W) -> (B, 2, H, W).

    Uses ``amax`` (exports as ReduceMax) rather than ``max(dim)``, which also emits ArgMax.
    """
    return torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
