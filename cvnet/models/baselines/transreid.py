"""TransReID (He et al., ICCV 2021): ViT-B/16 with side information embeddings (SIE) and the
jigsaw patch module (JPM).

Follows ``damo-cv/TransReID`` (``model/make_model.py::build_transformer_local`` and
``model/backbones/vit_pytorch.py``) with its VeRi settings (``configs/VeRi/vit_transreid*.yml``:
256x256 input, shift 8, 2 shuffle groups, 4 local parts, SIE coefficient 3.0, test feature
before the BNNecks). The ViT runs its first 11 blocks; the JPM copies the 12th block twice: the
global branch runs it (+ LayerNorm) on all tokens, the local branch runs it on the class token
plus each quarter of the shifted and shuffled patch tokens. Each of the 5 class-token features
has a BNNeck and a bias-free classifier. Test feature: global concatenated with the four local
features divided by 4, 5 * 768 = 3840-d. ``patch_stride=12`` gives the overlapping-patch
TransReID* (442 tokens at 256x256).

SIE: ``num_sie`` learnt embeddings, added to every token times ``sie_coef``, indexed by the
optional ``side_ids`` argument of ``forward`` -- on CVPair the natural side information is the
view (aerial or ground), so ``num_sie=2``. ``model(x)`` without ``side_ids`` (and the exported
graph, which has one input) adds none.

Parameters at 256x256 with 391 classes: patch embedding 590,592 + class token 768 + position
embeddings 257 * 768 = 197,376 + SIE 2 * 768 = 1,536 + 11 blocks 11 * 7,087,872 + the JPM's 2
block copies with LayerNorms 2 * 7,089,408 + 5 BNNecks 7,680 + 5 classifiers 5 * 768 * 391 =
94,444,800 (94.4M; 92,943,360 without classifiers). The paper's 86.6M is the plain ImageNet
ViT-B/16 count (224x224, 1000-way head: 86,567,656); TransReID's JPM alone adds a block (7.1M),
so 94.4M (+9.1%) is what the published architecture gives. (The official code also keeps the
base ViT's 12th block, unused in the forward, among its parameters: 101.5M with it.)
"""

from typing import Optional

import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError
from cvnet.models.baselines.common import (CVPAIR_TRAIN_IDS, BNNeck, ReIDOutput, check_input_size,
                                           check_num_classes, to_pair, trunc_normal_init)
from cvnet.models.registry import register_model


class Attention(nn.Module):
    """Multi-head self-attention: (B, N, dim) -> (B, N, dim), with MatMul + Softmax (no einsum)."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"embedding width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        qkv = self.qkv(x).reshape(-1, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, d) each
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)  # (B, heads, N, N)
        return self.proj((attn @ v).transpose(1, 2).reshape(-1, n, self.num_heads * self.head_dim))


class Block(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransReID(nn.Module):
    """ViT-B/16 + SIE + JPM for ReID.

    Eval: (B, 3, H, W) -> (B, 5 * embed_dim) = (B, 3840) with the JPM (global feature and the
    four local features / 4, before the BNNecks by default), (B, 768) without it. Train:
    :class:`ReIDOutput` with the 5 (or 1) pre-BN features and as many logits tensors.

    Args:
        num_classes: Training identities; 0 builds no classifiers.
        img_size: Input (H, W) or side the position embeddings are built for [256].
        patch_size: Patch side [16].
        patch_stride: Patch stride; 16 for TransReID, 12 for the overlapping TransReID*.
        embed_dim: Token width [ViT-B: 768].
        depth: Transformer blocks [12]; with the JPM the last one is its branches.
        num_heads: Attention heads [12].
        mlp_ratio: MLP hidden width / embed_dim [4].
        jpm: Build the jigsaw patch module.
        num_local: Local features of the JPM [4].
        shift: Tokens the JPM's shift operation moves [VeRi config: 8].
        shuffle_groups: Groups of the JPM's patch shuffle [2].
        num_sie: Side-information values (cameras x views); 0 builds no SIE.
        sie_coef: Weight of the SIE [3.0].
        neck_feat: Eval feature ``"before"`` (VeRi config) or ``"after"`` the BNNecks.
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS, img_size=256, patch_size: int = 16,
                 patch_stride: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, jpm: bool = True,
                 num_local: int = 4, shift: int = 8, shuffle_groups: int = 2, num_sie: int = 2,
                 sie_coef: float = 3.0, neck_feat: str = "before"):
        super().__init__()
        check_num_classes(num_classes)
        if neck_feat not in ("before", "after"):
            raise ConfigError(f"neck_feat must be 'before' or 'after', got {neck_feat!r}")
        self.img_size = to_pair(img_size)
        grid = [(side - patch_size) // patch_stride + 1 for side in self.img_size]
        self.num_patches = grid[0] * grid[1]
        if jpm and not 1 <= shift < self.num_patches:
            raise ConfigError(f"shift must be in 1..{self.num_patches - 1}, got {shift}")
        self.jpm, self.num_local, self.shift = jpm, num_local, shift
        self.shuffle_groups, self.sie_coef, self.neck_feat = shuffle_groups, sie_coef, neck_feat

        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, stride=patch_stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.sie_embed = nn.Embedding(num_sie, embed_dim) if num_sie > 0 else None
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio=mlp_ratio)
                                    for _ in range(depth - 1 if jpm else depth))
        if jpm:
            self.global_branch = nn.Sequential(Block(embed_dim, num_heads, mlp_ratio=mlp_ratio),
                                               nn.LayerNorm(embed_dim, eps=1e-6))
            self.local_branch = nn.Sequential(Block(embed_dim, num_heads, mlp_ratio=mlp_ratio),
                                              nn.LayerNorm(embed_dim, eps=1e-6))
        else:
            self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        trunc_normal_init(self)
        for p in (self.cls_token, self.pos_embed) + ((self.sie_embed.weight,) if num_sie else ()):
            nn.init.trunc_normal_(p, std=0.02)
        self.neck = BNNeck(embed_dim, num_classes)
        self.local_necks = nn.ModuleList(BNNeck(embed_dim, num_classes)
                                         for _ in range(num_local if jpm else 0))
        self.embedding_dim = embed_dim * (1 + len(self.local_necks))

    def forward_features(self, x: torch.Tensor,
                         side_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + num_patches, embed_dim) tokens after the shared blocks."""
        check_input_size(x, self.img_size, "TransReID")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = x + self.pos_embed
        if side_ids is not None:
            if self.sie_embed is None:
                raise ConfigError("side_ids given to a TransReID built without SIE; build it "
                                  "with num_sie > 0")
            x = x + self.sie_coef * self.sie_embed(side_ids).unsqueeze(1)  # (B, 1, D)
        for block in self.blocks:
            x = block(x)
        return x

    def _shift_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """The JPM's shift and patch shuffle of the patch tokens: (B, 1 + N, D) -> (B, N', D)."""
        x = torch.cat([x[:, self.shift:], x[:, 1:self.shift]], dim=1)  # (B, N, D), shifted
        length = self.num_patches
        if length % self.shuffle_groups:  # as the official code: pad with the second-last token
            pad = self.shuffle_groups - length % self.shuffle_groups
            x = torch.cat([x] + [x[:, -2:-1]] * pad, dim=1)
            length += pad
        x = x.reshape(-1, self.shuffle_groups, length // self.shuffle_groups, x.shape[-1])
        return x.transpose(1, 2).reshape(-1, length, x.shape[-1])

    def forward(self, x: torch.Tensor, side_ids: Optional[torch.Tensor] = None):
        x = self.forward_features(x, side_ids)
        if not self.jpm:
            features = (self.norm(x)[:, 0],)
        else:
            token, patches = x[:, :1], self._shift_shuffle(x)
            part = self.num_patches // self.num_local
            groups = (torch.cat([token, patches[:, i * part:(i + 1) * part]], dim=1)
                      for i in range(self.num_local))  # class token + a quarter of the patches
            features = ((self.global_branch(x)[:, 0],)
                        + tuple(self.local_branch(group)[:, 0] for group in groups))
        necks = (self.neck,) + tuple(self.local_necks)
        if not self.training and self.neck_feat == "before":
            return torch.cat([features[0]] + [f / self.num_local for f in features[1:]], dim=1)
        bn_features = tuple(neck(f) for neck, f in zip(necks, features))
        if not self.training:
            return torch.cat([bn_features[0]] + [f / self.num_local for f in bn_features[1:]],
                             dim=1)
        logits = ()
        for neck, f in zip(necks, bn_features):
            logits += neck.logits(f)
        return ReIDOutput(features, logits)


@register_model
def transreid(**kwargs) -> TransReID:
    """Table 2 TransReID: ViT-B/16 + SIE + JPM at 256x256, 3840-d embedding, ~94.4M."""
    return TransReID(**kwargs)
