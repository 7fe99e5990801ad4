"""P x K batch sampling: P identities, K images each, as the triplet loss needs."""

from typing import Dict, Iterator, List, Sequence

import numpy as np
from torch.utils.data import Sampler

from cvnet.core.errors import ConfigError


class PKSampler(Sampler):
    """Yields dataset indices in batches of ``num_identities x num_instances``.

    Each epoch every identity's images are shuffled and cut into groups of K (an identity with
    fewer than K images is topped up by sampling its images again); groups are then drawn P at a
    time from random identities until fewer than P identities have groups left. Under
    DistributedDataParallel every rank builds the same seeded batch list and takes every
    ``world_size``-th batch, so ranks see disjoint batches of equal count.

    Args:
        labels: Identity label of each dataset item.
        batch_size: Images per batch (P x K); must be a multiple of ``num_instances``.
        num_instances: K, images per identity in a batch [paper: 4].
        seed: Base seed; the epoch set with :meth:`set_epoch` is added to it.
        rank: This process's rank (0 without DDP).
        world_size: Number of processes (1 without DDP).
    """

    def __init__(self, labels: Sequence[int], batch_size: int, num_instances: int = 4, *,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if num_instances < 1 or batch_size % num_instances:
            raise ConfigError(f"batch size {batch_size} must be a positive multiple of "
                              f"num_instances (K = {num_instances})")
        self.num_identities = batch_size // num_instances
        self.num_instances = num_instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.index_of: Dict[int, List[int]] = {}
        for index, label in enumerate(labels):
            self.index_of.setdefault(int(label), []).append(index)
        if len(self.index_of) < self.num_identities:
            raise ConfigError(f"a batch of {batch_size} with K = {num_instances} needs "
                              f"{self.num_identities} identities, but the training set has only "
                              f"{len(self.index_of)}; lower --batch-size")

    def set_epoch(self, epoch: int) -> None:
        """Reseeds the shuffling for ``epoch`` (call before each epoch, as with DDP samplers)."""
        self.epoch = epoch

    def batches(self) -> List[List[int]]:
        """This rank's batches for the current epoch, each a list of P x K dataset indices."""
        rng = np.random.default_rng(self.seed + self.epoch)
        groups: Dict[int, List[List[int]]] = {}
        for label, indices in self.index_of.items():
            indices = list(indices)
            if len(indices) < self.num_instances:
                indices += list(rng.choice(indices, self.num_instances - len(indices)))
            order = [indices[i] for i in rng.permutation(len(indices))]
            usable = len(order) - len(order) % self.num_instances
            groups[label] = [order[i:i + self.num_instances]
                             for i in range(0, usable, self.num_instances)]
        batches = []
        while True:
            available = [label for label, left in groups.items() if left]
            if len(available) < self.num_identities:
                break
            chosen = rng.choice(len(available), self.num_identities, replace=False)
            batches.append([int(i) for c in chosen for i in groups[available[c]].pop()])
        per_rank = len(batches) // self.world_size  # equal counts on every rank, or DDP hangs
        return batches[self.rank::self.world_size][:per_rank]

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        return len(self.batches()) * self.num_identities * self.num_instances
