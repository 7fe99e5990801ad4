"""ReID losses: label-smoothed cross-entropy plus batch-hard triplet, on each CVNet feature."""

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvnet.models.cvnet import CVNetOutput


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of (N, D) features -> (N, N).

    Clamped before the square root so the gradient stays finite at zero distance.
    """
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
        Scalar loss.
    """
    dist = pairwise_euclidean(features)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (N, N)
    hardest_positive = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_negative = dist.masked_fill(same, float("inf")).amin(dim=1)
    valid = torch.isfinite(hardest_negative)  # anchors whose identity is not the whole batch
    if not valid.any():
        return features.sum() * 0.0
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


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
                labels: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Returns the total loss and its parts (as floats, for logging)."""
        if output.global_logits is None:
            raise ValueError("the model has no ID classifiers; build it with num_classes > 0 "
                             "to train with the softmax loss")
        parts = {
            "ce_global": F.cross_entropy(output.global_logits.float(), labels,
                                         label_smoothing=self.label_smoothing),
            "ce_part": F.cross_entropy(output.part_logits.float(), labels,
                                       label_smoothing=self.label_smoothing),
            "tri_global": batch_hard_triplet_loss(output.global_features.float(), labels,
                                                  self.triplet_margin),
            "tri_part": batch_hard_triplet_loss(output.part_features.float(), labels,
                                                self.triplet_margin),
        }
        total = sum(parts.values())
        return total, {name: float(value.detach()) for name, value in parts.items()}
