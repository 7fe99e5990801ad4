"""What the Table 2 baselines share: the train-mode output, the BNNeck, the "+ CH" head, stripes.

Conventions every baseline follows (the same interface as :class:`cvnet.models.CVNet`):

- eval mode: ``model(x)`` with (B, 3, H, W) float32 normalised RGB returns one tensor, the
  (B, ``model.embedding_dim``) retrieval embedding, not L2-normalised;
- train mode: ``model(x)`` returns a :class:`ReIDOutput` with what the method's losses need;
- ``num_classes`` ID classifiers live in modules whose name contains ``classifier`` (so
  ``cvnet-summary`` reports them apart); ``num_classes=0`` builds none.
"""

from typing import NamedTuple, Tuple

import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError

#: Training identities of CVPair v1.0: "The training set comprises 391 identities" (paper,
#: section 3, Split). The default classifier size of every baseline.
CVPAIR_TRAIN_IDS = 391

#: Width of the ImageNet classifier the lightweight backbones ship with, which the paper's
#: "+ CH" parameter counts include (see :class:`ClassificationHead`).
IMAGENET_CLASSES = 1000


class ReIDOutput(NamedTuple):
    """What a baseline's train-mode forward returns for its losses.

    Attributes:
        features: (B, D_i) features for the metric (triplet) losses, in the method's order.
        logits: (B, num_classes) ID logits for the softmax losses, one per classifier; empty
            when the model has no classifiers (``num_classes=0``).
    """

    features: Tuple[torch.Tensor, ...]
    logits: Tuple[torch.Tensor, ...]


def check_num_classes(num_classes: int) -> None:
    """Raises a :class:`ConfigError` unless ``num_classes`` is a count (0 = no classifiers)."""
    if num_classes < 0:
        raise ConfigError(f"num_classes must be >= 0 (0 = no classifiers), got {num_classes}")


def check_input_size(x: torch.Tensor, expected: Tuple[int, int], model: str) -> None:
    """Raises if an eager input's (H, W) differs from the size a model was built for.

    Models with position embeddings, attention biases or fixed part stripes are built for one
    input size (``img_size``). Skipped while tracing for ONNX export, where the size is fixed.
    """
    if torch.jit.is_tracing():
        return
    got = tuple(x.shape[-2:])
    if got != tuple(expected):
        raise ConfigError(f"{model} was built for {expected[0]}x{expected[1]} inputs, got "
                          f"{got[0]}x{got[1]}; build it with img_size={got[0]} (or {got}), or "
                          f"resize the images to {expected[0]}x{expected[1]}")


def to_pair(size) -> Tuple[int, int]:
    """``256`` or ``(256, 256)`` -> ``(256, 256)``."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class BNNeck(nn.Module):
    """BNNeck (Luo et al. 2019): BatchNorm1d with a frozen bias, then a bias-free ID classifier.

    ``forward`` maps (B, dim) to the normalised (B, dim) feature; :meth:`logits` applies the
    classifier to it.

    Args:
        dim: Feature width.
        num_classes: Training identities; 0 builds no classifier.
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, 0.0, 0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)

    def logits(self, feature: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, num_classes) logits of a BN'd feature, as a 1-tuple; ``()`` without a classifier."""
        return () if self.classifier is None else (self.classifier(feature),)


class ClassificationHead(nn.Module):
    """The "+ CH" of Table 2: a lightweight backbone's ImageNet FC, then a BNNeck.

    The paper gives no details of its classification head, but its counts pin one down: each
    "+ CH" model has 0.3M more parameters than the published ImageNet model *including* its
    1000-way FC (StarNet-S1 2.9 -> 3.2M, MobileOne-S1 4.8 -> 5.1M, SBCFormer-XS 5.6 -> 5.9M,
    FasterNet-T1 7.6 -> 7.9M) although the four feature widths differ (192 to 1280). So the FC
    stays, as a ``feature_dim``-wide projection, and the ReID head sits on it: BNNeck +
    classifier, 1000 * 391 + 2 * 1000 = 0.393M for CVPair's 391 training IDs, which lands all four
    within 2% of the paper. Replacing the FC with the ReID head instead would give 2.75, 3.99,
    5.42 and 6.82M (-14%, -22%, -8%, -14%).

    Eval: the BN'd ``feature_dim`` feature (BoT's convention). Train: the pre-BN feature for the
    triplet loss and the ID logits.

    Args:
        in_dim: Width of the backbone's pooled pre-logits feature.
        feature_dim: Width of the FC (1000, as the ImageNet model); 0 drops it, so the BNNeck
            sits directly on the pooled feature.
        num_classes: Training identities; 0 builds no classifier.
    """

    def __init__(self, in_dim: int, *, feature_dim: int = IMAGENET_CLASSES, num_classes: int):
        super().__init__()
        if feature_dim < 0:
            raise ConfigError(f"feature_dim must be >= 0 (0 = no FC), got {feature_dim}")
        self.fc = nn.Linear(in_dim, feature_dim) if feature_dim > 0 else nn.Identity()
        self.neck = BNNeck(feature_dim or in_dim, num_classes)
        self.embedding_dim = feature_dim or in_dim

    def forward(self, pooled: torch.Tensor):
        """(B, in_dim) -> (B, embedding_dim) embedding (eval) or :class:`ReIDOutput` (train)."""
        feature = self.fc(pooled)
        bn_feature = self.neck(feature)
        if not self.training:
            return bn_feature
        return ReIDOutput((feature,), self.neck.logits(bn_feature))


def stripe_bounds(height: int, parts: int) -> Tuple[int, ...]:
    """Row boundaries of ``parts`` horizontal stripes of a ``height``-row map, as even as can be.

    ``stripe_bounds(16, 3) == (0, 5, 11, 16)``; the stripes do not overlap.
    """
    return tuple((2 * i * height + parts) // (2 * parts) for i in range(parts + 1))


class StripePool(nn.Module):
    """Pools a (B, C, H, W) map over horizontal stripes into ``parts`` (B, C) part features.

    The boundaries are Python integers fixed for one feature height, so the exported graph holds
    plain Slice + ReduceMean/ReduceMax nodes (an adaptive pool whose size does not divide the
    input does not export); 256x256 images give 16-row maps, which three stripes split 5/6/5.

    Args:
        parts: Number of stripes.
        height: Rows of the map it pools.
        mode: ``"mean"`` (average pooling) or ``"max"``.
    """

    def __init__(self, parts: int, height: int, *, mode: str = "mean"):
        super().__init__()
        if mode not in ("mean", "max"):
            raise ConfigError(f"stripe pooling mode must be 'mean' or 'max', got {mode!r}")
        if not 1 <= parts <= height:
            raise ConfigError(f"cannot split a {height}-row feature map into {parts} stripes; "
                              "use a larger img_size or fewer parts")
        self.bounds = stripe_bounds(height, parts)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        pool = torch.amax if self.mode == "max" else torch.mean
        return tuple(pool(x[:, :, top:bottom], dim=(2, 3))
                     for top, bottom in zip(self.bounds[:-1], self.bounds[1:]))


def global_pool(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """(B, C, H, W) -> (B, C) global average (``"mean"``) or max (``"max"``) pooling."""
    return x.amax(dim=(2, 3)) if mode == "max" else x.mean(dim=(2, 3))


def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """Transformer-style init: truncated-normal Linear weights, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)



class ClassifiedBackbone(nn.Module):
    """Base of the lightweight "+ CH" baselines: ImageNet backbone + :class:`ClassificationHead`.

    Eval: (B, 3, H, W) -> (B, feature_dim) BN'd embedding (1000-d by default). Train:
    :class:`ReIDOutput` with the pre-BN feature and the ID logits. A subclass builds its layers,
    implements :meth:`forward_features` (image -> pooled pre-logits feature) and calls
    :meth:`add_head` last with its ``num_classes`` (training identities, 0: no classifier) and
    ``feature_dim`` (width of the FC kept from the ImageNet model, 0: none).
    """

    def add_head(self, in_dim: int, *, feature_dim: int, num_classes: int) -> None:
        """Adds the "+ CH" head on a ``in_dim``-wide pooled feature; sets ``embedding_dim``."""
        check_num_classes(num_classes)
        self.head = ClassificationHead(in_dim, feature_dim=feature_dim, num_classes=num_classes)
        self.embedding_dim = self.head.embedding_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, in_dim) pooled pre-logits feature."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        """(B, embedding_dim) embedding in eval mode; :class:`ReIDOutput` in train mode."""
        return self.head(self.forward_features(x))
