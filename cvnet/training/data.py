"""The training dataset: image paths and identity labels -> augmented tensors."""

from typing import Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from cvnet.preprocess import decode_image
from cvnet.training.augment import TrainTransform


class TrainDataset(Dataset):
    """Decodes and augments training images; deterministic for a (seed, epoch, index).

    Args:
        paths: Image files, checked beforehand (see ``cvnet.datasets.check_images``).
        labels: Contiguous identity labels 0..C-1, one per path.
        transform: The augmentation on top of the shared preprocessing.
        seed: Base seed of the per-sample augmentation.
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], transform: TrainTransform,
                 seed: int = 0):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths, self.labels = list(paths), [int(label) for label in labels]
        self.transform, self.seed, self.epoch = transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Changes the augmentation stream (data-loader workers restart each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        """Returns a (3, H, W) float32 sample and its label."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self.transform(decode_image(self.paths[index]), rng)
        return torch.from_numpy(sample), self.labels[index]
