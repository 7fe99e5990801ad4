"""SBCFormer-XS (Lu et al., WACV 2024) + the "+ CH" ReID head.

Follows ``xyongLu/SBCFormer`` (``models/sbcformer.py``, ``SBCFormer_XS``): a stem of three 3x3
stride-2 conv + BN + ReLU layers to 96 channels (1/8 resolution), then three stages (widths 96,
160, 288; the second and third start with a 3x3 stride-2 conv + BN). Each stage is one
SBCFormer block: inverted-residual blocks (local branch); average pooling by 4, 2, 1 to a fixed
r x r grid, two more inverted-residual "mixer" blocks and 2, 3, 2 modified transformer blocks
(attention whose queries/keys/values come from one 1x1 conv, values refined by a depthwise 3x3
conv, learnt relative-position biases; GELU MLP x4); a grouped transposed conv + BN back to the
local resolution; the global result gates the local one (hard sigmoid) and a 1x1 conv + BN
fuses both. Then global average pooling, LayerNorm and the ImageNet FC.

The grid is r = img_size / 32: 7 at ImageNet's 224, 8 at the paper's 256 (``img_size``), so the
attention-bias tables have 64 instead of 49 offsets (+ 15 * 33 heads = 495 parameters).

Parameters at 256x256: backbone with its final LayerNorm 5,305,656 + ImageNet FC 288 * 1000 +
1000 = 5,594,656 (at 224x224 5,594,161, the published 5.6M) + BNNeck 2,000 + classifier
1000 * 391 = 5,987,656 (6.0M); the paper lists 5.9M (+1.5%). See
:class:`cvnet.models.baselines.common.ClassificationHead` for the head.
"""

import itertools
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvnet.core.errors import ConfigError
from cvnet.models.baselines.common import (CVPAIR_TRAIN_IDS, IMAGENET_CLASSES, ClassifiedBackbone,
                                           check_input_size, to_pair, trunc_normal_init)
from cvnet.models.layers import ConvBnAct
from cvnet.models.registry import register_model

_STEM_STRIDE = 8
_GRID_STRIDE = 32


class InvertedResidual(nn.Module):
    """1x1 conv + BN, GELU, depthwise 3x3 + BN, GELU, 1x1 conv + BN, residual. Shape kept."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.pw1 = ConvBnAct(dim, hidden, 1, act=False)
        self.dw = ConvBnAct(hidden, hidden, 3, groups=hidden, act=False)
        self.pw2 = ConvBnAct(hidden, dim, 1, act=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.act(self.dw(self.act(self.pw1(x)))))


class GridAttention(nn.Module):
    """SBCFormer's attention on an r x r token grid: (B, r*r, dim) -> (B, r*r, dim).

    Args:
        dim: Token width.
        key_dim: Width of each head's queries and keys.
        num_heads: Heads.
        attn_ratio: Value width / key width.
        resolution: Grid side r.
    """

    def __init__(self, dim: int, *, key_dim: int, num_heads: int, attn_ratio: int,
                 resolution: int):
        super().__init__()
        self.num_heads, self.key_dim, self.resolution = num_heads, key_dim, resolution
        self.scale = key_dim ** -0.5
        self.v_dim = attn_ratio * key_dim * num_heads
        self.split = (key_dim * num_heads, key_dim * num_heads, self.v_dim)
        self.pwconv = nn.Conv2d(dim, sum(self.split), 1)
        self.dwconv = ConvBnAct(self.v_dim, self.v_dim, 3, groups=self.v_dim, act=False)
        self.proj_out = nn.Linear(self.v_dim, dim)
        self.act = nn.GELU()
        # One learnt bias per head and per |dx|, |dy| offset between two grid positions.
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets = {}
        idxs = [offsets.setdefault((abs(p[0] - q[0]), abs(p[1] - q[1])), len(offsets))
                for p in points for q in points]
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs",
                             torch.tensor(idxs, dtype=torch.long).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, r = x.shape[1], self.resolution
        x = self.pwconv(x.transpose(1, 2).reshape(-1, x.shape[2], r, r))
        q, k, v = torch.split(x, self.split, dim=1)
        q = q.reshape(-1, self.num_heads, self.key_dim, n).transpose(-2, -1)  # (B, h, N, kd)
        k = k.reshape(-1, self.num_heads, self.key_dim, n)  # (B, h, kd, N)
        v = v + self.act(self.dwconv(v))
        v = v.reshape(-1, self.num_heads, self.v_dim // self.num_heads, n).transpose(-2, -1)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (h, N, N)
        attn = torch.softmax((q @ k) * self.scale + bias, dim=-1)
        return self.proj_out((attn @ v).transpose(1, 2).reshape(-1, n, self.v_dim))


class ModifiedTransformer(nn.Module):
    """Pre-norm block: :class:`GridAttention` and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, *, mlp_ratio: int, **attention):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = GridAttention(dim, **attention)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                 nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SBCFormerBlock(nn.Module):
    """Local inverted residuals + pooled global attention, fused: (B, dim, H, W) -> same.

    Args:
        dim: Channels.
        depth_invres: Inverted residuals of the local branch.
        depth_mattn: Transformer blocks on the pooled grid.
        depth_mixer: Inverted residuals before the transformer blocks.
        pool_ratio: Pooling factor from H to the grid side (H = pool_ratio * resolution).
        invres_ratio: Expansion of the local inverted residuals.
        resolution: Grid side r.
        **attention: ``key_dim``, ``num_heads``, ``attn_ratio``, ``mlp_ratio``.
    """

    def __init__(self, dim: int, *, depth_invres: int, depth_mattn: int, depth_mixer: int,
                 pool_ratio: int, invres_ratio: int, resolution: int, mlp_ratio: int,
                 **attention):
        super().__init__()
        self.resolution = resolution
        self.invres_blocks = nn.Sequential(*[InvertedResidual(dim, dim * invres_ratio)
                                             for _ in range(depth_invres)])
        if pool_ratio > 1:
            self.pool = nn.AvgPool2d(pool_ratio, pool_ratio)
            self.unpool = nn.Sequential(
                nn.ConvTranspose2d(dim, dim, pool_ratio, stride=pool_ratio, groups=dim),
                nn.BatchNorm2d(dim))
        else:
            self.pool = self.unpool = nn.Identity()
        self.mixer = nn.Sequential(*[InvertedResidual(dim, dim * 2) for _ in range(depth_mixer)])
        self.trans_blocks = nn.Sequential(*[
            ModifiedTransformer(dim, mlp_ratio=mlp_ratio, resolution=resolution, **attention)
            for _ in range(depth_mattn)])
        self.proj = ConvBnAct(dim, dim, 1, act=False)
        self.proj_fuse = ConvBnAct(2 * dim, dim, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.invres_blocks(x)
        g = self.mixer(self.pool(local))  # (B, C, r, r)
        channels = g.shape[1]
        g = self.trans_blocks(g.flatten(2).transpose(1, 2))  # (B, r*r, C)
        g = self.unpool(g.transpose(1, 2).reshape(-1, channels, self.resolution, self.resolution))
        gated = local * F.hardsigmoid(self.proj(g))
        return self.proj_fuse(torch.cat([g, gated], dim=1))


class SBCFormer(ClassifiedBackbone):
    """SBCFormer backbone + "+ CH" head; forward as :class:`ClassifiedBackbone` (1000-d embedding).

    Args:
        num_classes, feature_dim: Classifier and FC widths, see :class:`ClassifiedBackbone`.
        img_size: Input (H, W) or side, multiples of 32; fixes the attention grid [256].
        embed_dims: Stage widths [XS: 96, 160, 288].
        key_dim: Query/key width per head [XS: 16].
        num_heads: Heads per stage [XS: 3, 5, 6].
        depths_invres, depths_mattn, depths_mixer: Per-stage block counts [XS: (2, 2, 1),
            (2, 3, 2), (2, 2, 2)].
        pool_ratios: Per-stage pooling to the grid [4, 2, 1].
        invres_ratio: Expansion of the local inverted residuals [2].
        attn_ratio: Value width / key width [2].
        mlp_ratio: Transformer MLP expansion [4].
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS,
                 feature_dim: int = IMAGENET_CLASSES, img_size=256,
                 embed_dims: Sequence[int] = (96, 160, 288), key_dim: int = 16,
                 num_heads: Sequence[int] = (3, 5, 6), depths_invres: Sequence[int] = (2, 2, 1),
                 depths_mattn: Sequence[int] = (2, 3, 2), depths_mixer: Sequence[int] = (2, 2, 2),
                 pool_ratios: Sequence[int] = (4, 2, 1), invres_ratio: int = 2,
                 attn_ratio: int = 2, mlp_ratio: int = 4):
        super().__init__()
        self.img_size = to_pair(img_size)
        if self.img_size[0] != self.img_size[1] or self.img_size[0] % _GRID_STRIDE:
            raise ConfigError(f"SBCFormer needs square inputs whose side is a multiple of "
                              f"{_GRID_STRIDE}, got img_size={img_size}; use e.g. 256")
        resolution = self.img_size[0] // _GRID_STRIDE
        d0 = embed_dims[0]
        self.stem = nn.Sequential(ConvBnAct(3, d0 // 4, 3, stride=2),
                                  ConvBnAct(d0 // 4, d0 // 2, 3, stride=2),
                                  ConvBnAct(d0 // 2, d0, 3, stride=2))
        stages = []
        for i, dim in enumerate(embed_dims):
            if _STEM_STRIDE * 2 ** i * pool_ratios[i] != _GRID_STRIDE:
                raise ConfigError(f"stage {i + 1} pools a 1/{_STEM_STRIDE * 2 ** i} map by "
                                  f"{pool_ratios[i]}, which does not give the 1/{_GRID_STRIDE} "
                                  "grid")
            merge = [ConvBnAct(embed_dims[i - 1], dim, 3, stride=2, act=False)] if i > 0 else []
            stages.append(nn.Sequential(*merge, SBCFormerBlock(
                dim, depth_invres=depths_invres[i], depth_mattn=depths_mattn[i],
                depth_mixer=depths_mixer[i], pool_ratio=pool_ratios[i], invres_ratio=invres_ratio,
                resolution=resolution, mlp_ratio=mlp_ratio, key_dim=key_dim,
                num_heads=num_heads[i], attn_ratio=attn_ratio)))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(embed_dims[-1], eps=1e-6)
        trunc_normal_init(self)
        self.add_head(embed_dims[-1], feature_dim=feature_dim, num_classes=num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.img_size, "SBCFormer")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x.mean(dim=(2, 3)))  # (B, 288) for XS


@register_model
def sbcformer_xs(**kwargs) -> SBCFormer:
    """Table 2 SBCFormer-XS + CH: ImageNet SBCFormer-XS and a BNNeck head at 256x256, ~6.0M."""
    return SBCFormer(**kwargs)
