"""The training data: image paths and identity labels -> augmented P x K batches."""

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cvnet.core.preprocess import PreprocessConfig, decode_image
from cvnet.training.augment import TrainTransform
from cvnet.training.config import TrainConfig
from cvnet.training.sampler import PKSampler


class TrainDataset(Dataset):
    """Decodes and augments training images; deterministic for a (seed, epoch, index).

    Args:
        paths: Image files, checked beforehand (see ``cvnet.core.datasets.check_images``).
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


class TrainLoader(NamedTuple):
    """A P x K data loader and what an epoch loop needs besides it."""

    loader: DataLoader
    sampler: PKSampler
    dataset: TrainDataset
    steps_per_epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Reshuffles the identities and changes the augmentation stream."""
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)


def build_train_loader(config: TrainConfig, paths: Sequence[str], labels: Sequence[int], *,
                       pin_memory: bool = False, rank: int = 0, world_size: int = 1,
                       seed: Optional[int] = None) -> TrainLoader:
    """The augmented P x K loader of a training run.

    Args:
        config: Input size, augmentation, batch size, K, workers and the step cap are read here.
        paths: Image files, checked beforehand.
        labels: Contiguous identity labels 0..C-1, one per path.
        pin_memory: Pin host memory (for CUDA training).
        rank: This process's rank; each rank gets its own share of every epoch's batches.
        world_size: Number of training processes.
        seed: Seed of sampling and augmentation (default ``config.seed``).
    """
    seed = config.seed if seed is None else seed
    preprocess = PreprocessConfig(height=config.img_size, width=config.img_size)
    dataset = TrainDataset(paths, labels,
                           TrainTransform(preprocess, flip_prob=config.flip_prob, pad=config.pad,
                                          erase_prob=config.erase_prob), seed=seed)
    sampler = PKSampler(dataset.labels, config.batch_size, config.num_instances, seed=seed,
                        rank=rank, world_size=world_size)
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                        num_workers=config.workers, drop_last=True, pin_memory=pin_memory)
    steps = len(sampler) // config.batch_size
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    return TrainLoader(loader, sampler, dataset, steps)
