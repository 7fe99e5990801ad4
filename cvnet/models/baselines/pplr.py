"""PPLR, part-based pseudo label refinement (Cho et al., CVPR 2022): its ResNet-50 part model.

Follows ``yoonkicho/PPLR`` (``pplr/models/resnet_part.py``): ResNet-50 with the last stride set
to 1; a global feature (global average pooling) and three part features (average pooling over
three horizontal stripes), each 2048-d and each with its own BNNeck and bias-free classifier.
PPLR is unsupervised: its classifiers score the pseudo-label clusters of the current epoch, so
``num_classes`` is the cluster count. At test time it returns the BN'd global feature (which
the repository L2-normalises; here normalisation stays outside the graph, as for CVNet).

Parameters: ResNet-50 without its FC 23,508,032 + 4 BNNecks 16,384 + 4 classifiers
4 * 2048 * 391 = 26,727,488 (26.7M) with 391 classes; the paper lists 26.8M (-0.3%), which
4 * 2048 * K reaches at K = 400 clusters.
"""

import torch
import torch.nn as nn

from cvnet.models.baselines.common import (CVPAIR_TRAIN_IDS, BNNeck, ReIDOutput, StripePool,
                                           check_input_size, check_num_classes, to_pair)
from cvnet.models.baselines.resnet import RESNET50_WIDTHS, ResNet50Backbone, feature_size
from cvnet.models.registry import register_model


class PPLR(ResNet50Backbone):
    """ResNet-50 (last stride 1) with a global and ``num_parts`` stripe features, each BNNeck'd.

    Eval: (B, 3, H, W) -> (B, 2048) BN'd global feature. Train: :class:`ReIDOutput` with the
    BN'd global and part features (the repository's losses use the BN'd ones) and one logits
    tensor per feature.

    Args:
        num_classes: Pseudo-label clusters (identities); 0 builds no classifiers.
        num_parts: Horizontal stripes [PPLR: 3].
        img_size: Input (H, W) or side; fixes the stripe boundaries (only training uses parts).
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS, num_parts: int = 3,
                 img_size=256):
        check_num_classes(num_classes)
        super().__init__(last_stride=1)
        dim = RESNET50_WIDTHS[-1]
        self.img_size = to_pair(img_size)
        self.neck = BNNeck(dim, num_classes)
        self.part_pool = StripePool(num_parts, feature_size(self.img_size, 1)[0], mode="mean")
        self.part_necks = nn.ModuleList(BNNeck(dim, num_classes) for _ in range(num_parts))
        self.embedding_dim = dim

    def forward(self, x: torch.Tensor):
        feature_map = self.forward_features(x)  # (B, 2048, H/16, W/16)
        global_feature = self.neck(feature_map.mean(dim=(2, 3)))
        if not self.training:
            return global_feature
        check_input_size(x, self.img_size, "PPLR")
        parts = tuple(neck(part)
                      for neck, part in zip(self.part_necks, self.part_pool(feature_map)))
        logits = self.neck.logits(global_feature)
        for neck, part in zip(self.part_necks, parts):
            logits += neck.logits(part)
        return ReIDOutput((global_feature,) + parts, logits)


@register_model
def pplr(**kwargs) -> PPLR:
    """Table 2 PPLR: ResNet-50 (last stride 1), global + 3 part features, 2048-d, ~26.7M."""
    return PPLR(**kwargs)
