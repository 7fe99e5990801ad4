"""ReID losses: label-smoothed cross-entropy plus batch-hard triplet, on each CVNet feature.

Every loss is computed in FP32, also under mixed precision (autocast), on FP32 copies of the
features and logits: the squared distances sum D products of features whose standard deviation
reaches tens, far beyond FP16's 65504 (see :mod:`cvnet.models.precision`).
"""

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvnet.models.cvnet import CVNetOutput
from cvnet.models.precision import float32_region, to_float32


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of (N, D) features -> (N, N) FP32.

    Computed in FP32 whatever the input dtype and autocast state: under FP16 autocast the
    product ``x @ x.t()`` of 768-d features with standard deviation 60 reaches about 2.8
    million and would be inf. Clamped before the square root so the gradient stays finite at
    zero distance.
    """
    with float32_region(x):
        x = to_float32(x)
        squared = x.pow(2).sum(dim=1, keepdim=True)
        dist = squared + squared.t() - 2.0 * (x @ x.t())
        return dist.clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor,
                            margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017).

    For each anchor, the farthest sample of its identity and the nearest of another identity:
    ``mean(relu(d(a, p_hard) - d(a, n_hard) + margin))``.

    Args:
        features: (N, D) embeddings, not normalised.
        labels: (N,) integer identity labels; the batch needs at least two identities and at
            least two samples of some identity (a P x K batch).
        margin: Margin in feature-space distance units.

    Returns:
        Scalar FP32 loss; 0 (with a zero gradient) when no anchor has a negative.
    """
    dist = pairwise_euclidean(features)  # FP32
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (N, N)
    hardest_positive = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_negative = dist.masked_fill(same, float("inf")).amin(dim=1)
    valid = torch.isfinite(hardest_negative)  # anchors whose identity is not the whole batch
    # Mean over the valid anchors without a data-dependent branch (no host synchronisation);
    # 0 when there is none.
    losses = torch.where(valid, F.relu(hardest_positive - hardest_negative + margin),
                         torch.zeros_like(hardest_positive))
    return losses.sum() / valid.sum().clamp(min=1)


class ReIDLoss(nn.Module):
    """The paper's loss: softmax (CE, label smoothing) + triplet, on the global and part features.

    Args:
        label_smoothing: Cross-entropy label smoothing [choice: 0.1, as MSINet].
        triplet_margin: Batch-hard triplet margin [choice: 0.3].
    """

    def __init__(self, *, label_smoothing: float = 0.1, triplet_margin: float = 0.3):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.triplet_margin = triplet_margin

    def forward(self, output: CVNetOutput,
                labels: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Returns the total loss (FP32 scalar) and its parts.

        The parts are detached FP32 scalars on the loss's device: reading one (``float(v)``)
        waits for the GPU, so read them only where the loop logs.
        """
        if output.global_logits is None:
            raise ValueError("the model has no ID classifiers; build it with num_classes > 0 "
                             "to train with the softmax loss")
        with float32_region(labels):
            parts = {
                "ce_global": F.cross_entropy(to_float32(output.global_logits), labels,
                                             label_smoothing=self.label_smoothing),
                "ce_part": F.cross_entropy(to_float32(output.part_logits), labels,
                                           label_smoothing=self.label_smoothing),
                "tri_global": batch_hard_triplet_loss(output.global_features, labels,
                                                      self.triplet_margin),
                "tri_part": batch_hard_triplet_loss(output.part_features, labels,
                                                    self.triplet_margin),
            }
            total = sum(parts.values())
        return total, {name: value.detach() for name, value in parts.items()}
