"""MGN, the multiple granularity network (Wang et al., ACM MM 2018).

Follows the paper and ``seathiefwang/MGN-pytorch`` (``model/mgn.py``): ResNet-50 is shared up
to the first block of stage 3; three branches each copy the rest of stage 3 and stage 4 -- the
global branch with stage 4's stride 2, the two part branches with stride 1. Each branch is
max-pooled globally (the paper's global max pooling; the repository also offers average); the
part branches are also pooled over 2 and 3 horizontal stripes. Each of the 3 + 2 + 3 = 8 pooled
2048-d features has its own reduction (1x1 conv 2048 -> 256, BN, ReLU) and its own ID
classifier (Linear 256 -> K with bias). Softmax losses on all 8 reduced features, triplet
losses on the 3 global ones; the test feature is all 8 concatenated (2048-d).

Parameters: shared 2,957,376 (stem + stages 1-2 + stage 3's first block) + 3 branches
3 * 20,550,656 (stage 3's other 5 blocks + stage 4) + 8 reductions 8 * 524,800 = 68,807,744
without classifiers; + 8 classifiers 8 * (256 * 391 + 391) = 803,896 gives 69,611,640 (69.6M)
with 391 classes; the paper lists 70.4M (-1.1%), the count with Market-1501's 751 classes
(68,807,744 + 8 * 257 * 751 = 70,351,800).
"""

import torch
import torch.nn as nn

from cvnet.core.errors import ConfigError
from cvnet.models.baselines.common import (CVPAIR_TRAIN_IDS, ReIDOutput, StripePool,
                                           check_input_size, check_num_classes, global_pool,
                                           to_pair)
from cvnet.models.baselines.resnet import (RESNET50_DEPTHS, RESNET50_WIDTHS, feature_size,
                                           resnet50_stages, resnet50_stem, resnet_stage)
from cvnet.models.layers import Bottleneck, ConvBnAct, init_weights
from cvnet.models.registry import register_model


def _branch(last_stride: int) -> nn.Sequential:
    """Stage 3 after its first block, then stage 4: (B, 1024, h, w) -> (B, 2048, h/s, w/s)."""
    c3, c4 = RESNET50_WIDTHS[2], RESNET50_WIDTHS[3]
    return nn.Sequential(resnet_stage(c3, c3, RESNET50_DEPTHS[2] - 1, stride=1),
                         resnet_stage(c3, c4, RESNET50_DEPTHS[3], stride=last_stride))


class MGN(nn.Module):
    """ResNet-50 with one global and two part branches; 8 reduced 256-d features.

    Eval: (B, 3, H, W) -> (B, 8 * feature_dim) = (B, 2048), the concatenated reduced features.
    Train: :class:`ReIDOutput` with the 3 global reduced features (triplet) and 8 logits tensors.

    Args:
        num_classes: Training identities; 0 builds no classifiers.
        feature_dim: Width of each reduced feature [MGN: 256].
        img_size: Input (H, W) or side; fixes the part branches' stripe boundaries.
        pool: ``"max"`` (the paper) or ``"mean"`` pooling of the branches and stripes.
    """

    def __init__(self, *, num_classes: int = CVPAIR_TRAIN_IDS, feature_dim: int = 256,
                 img_size=256, pool: str = "max"):
        super().__init__()
        check_num_classes(num_classes)
        if pool not in ("max", "mean"):
            raise ConfigError(f"pool must be 'max' or 'mean', got {pool!r}")
        self.img_size = to_pair(img_size)
        self.pool = pool
        self.stem = resnet50_stem()
        self.stages = resnet50_stages(num_stages=2)
        self.shared = Bottleneck(RESNET50_WIDTHS[1], RESNET50_WIDTHS[2], stride=2)
        self.global_branch = _branch(2)
        self.part2_branch = _branch(1)
        self.part3_branch = _branch(1)
        rows = feature_size(self.img_size, 1)[0]
        self.part2_pool = StripePool(2, rows, mode=pool)
        self.part3_pool = StripePool(3, rows, mode=pool)
        num_features = 3 + 2 + 3
        self.reductions = nn.ModuleList(ConvBnAct(RESNET50_WIDTHS[-1], feature_dim, 1)
                                        for _ in range(num_features))
        self.classifiers = (nn.ModuleList(nn.Linear(feature_dim, num_classes)
                                          for _ in range(num_features))
                            if num_classes > 0 else None)
        self.embedding_dim = num_features * feature_dim
        init_weights(self)
        if self.classifiers is not None:
            for classifier in self.classifiers:  # as the repository: Kaiming fan-out, zero bias
                nn.init.kaiming_normal_(classifier.weight, mode="fan_out")

    def forward_features(self, x: torch.Tensor):
        """(B, 3, H, W) -> the 8 pooled (B, 2048) features: 3 global, then 2 + 3 stripes."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.shared(x)  # (B, 1024, H/16, W/16)
        g, p2, p3 = self.global_branch(x), self.part2_branch(x), self.part3_branch(x)
        pooled = tuple(global_pool(b, self.pool) for b in (g, p2, p3))
        return pooled + self.part2_pool(p2) + self.part3_pool(p3)

    def forward(self, x: torch.Tensor):
        check_input_size(x, self.img_size, "MGN")
        reduced = [reduction(f[:, :, None, None]).flatten(1)
                   for reduction, f in zip(self.reductions, self.forward_features(x))]
        if not self.training:
            return torch.cat(reduced, dim=1)
        logits = (() if self.classifiers is None
                  else tuple(c(f) for c, f in zip(self.classifiers, reduced)))
        return ReIDOutput(tuple(reduced[:3]), logits)


@register_model
def mgn(**kwargs) -> MGN:
    """Table 2 MGN: ResNet-50, 1 global + 2 part branches, 2048-d embedding, ~69.6M."""
    return MGN(**kwargs)
