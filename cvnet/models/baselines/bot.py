"""BoT, the "strong baseline" of Luo et al. (CVPRW 2019, TMM 2019): ResNet-50 + BNNeck.

Follows ``michuanhaohao/reid-strong-baseline`` (``modeling/baseline.py``): ResNet-50 with the
last stride set to 1, global average pooling to a 2048-d feature f_t (triplet loss), BNNeck
(BatchNorm1d with a frozen bias) to f_i, a bias-free ID classifier on f_i. At test time the
paper and the repository's configs (``TEST.NECK_FEAT: 'after'``) use f_i, the BN'd feature.

Parameters: ResNet-50 without its FC 23,508,032 + BNNeck 4,096 + classifier 2048 * 391 =
24,312,896 (24.3M) for CVPair's 391 training IDs; the paper lists 23.8M (+2.2%).
"""

import torch

from cvnet.core.errors import ConfigError
from cvnet.models.baselines.common import CVPAIR_TRAIN_IDS, BNNeck, ReIDOutput, check_num_classes
from cvnet.models.baselines.resnet import RESNET50_WIDTHS, ResNet50Backbone
from cvnet.models.registry import register_model


class BoT(ResNet50Backbone):
    """ResNet-50 (last stride 1) + global average pooling + BNNeck.

    Eval: (B, 3, H, W) -> (B, 2048) BN'd feature (``neck_feat="after"``) or the pooled feature
    (``"before"``). Train: :class:`ReIDOutput` with the pooled feature and the ID logits.

    Args:
        num_classes: Training identities; 0 builds no classifier.
        last_stride: Stride of ResNet-50's stage 4 [BoT: 1].
        neck_feat: Which feature the eval forward returns, ``"after"`` or ``"before"`` the BN.
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS, last_stride: int = 1,
                 neck_feat: str = "after"):
        check_num_classes(num_classes)
        if neck_feat not in ("before", "after"):
            raise ConfigError(f"neck_feat must be 'before' or 'after', got {neck_feat!r}")
        super().__init__(last_stride=last_stride)
        self.neck = BNNeck(RESNET50_WIDTHS[-1], num_classes)
        self.neck_feat = neck_feat
        self.embedding_dim = RESNET50_WIDTHS[-1]

    def forward(self, x: torch.Tensor):
        feature = self.forward_features(x).mean(dim=(2, 3))  # (B, 2048) f_t
        if not self.training and self.neck_feat == "before":
            return feature
        bn_feature = self.neck(feature)  # f_i
        if not self.training:
            return bn_feature
        return ReIDOutput((feature,), self.neck.logits(bn_feature))


@register_model
def bot(**kwargs) -> BoT:
    """Table 2 BoT: ResNet-50 (last stride 1) + BNNeck, 2048-d BN'd embedding, ~24.3M."""
    return BoT(**kwargs)
