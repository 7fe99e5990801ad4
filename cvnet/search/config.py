"""The settings of a search run (torch-free, so ``cvnet-search --help`` stays fast)."""

from dataclasses import dataclass

from cvnet.training.config import TrainConfig


@dataclass
class SearchConfig(TrainConfig):
    """A search run: the training settings (for the weight steps) plus the architecture's.

    Attributes:
        arch_lr: Adam learning rate of the architecture logits [paper: 0.002].
        arch_beta1: Adam beta1 of the architecture logits [MSINet: 0.5; beta2 is 0.999].
        arch_weight_decay: Weight decay of the architecture logits [MSINet: 1e-3].
        split_ratio: Fraction of the training identities used for weight steps; the rest
            drive the architecture steps [0.5].
    """

    output: str = "runs/search"
    arch_lr: float = 0.002
    arch_beta1: float = 0.5
    arch_weight_decay: float = 1e-3
    split_ratio: float = 0.5
