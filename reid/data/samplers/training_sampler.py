"""Plain shuffled image indices, split across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from yacs.config import CfgNode

from .base import TrainSampler
from .build import SAMPLER_REGISTRY


@SAMPLER_REGISTRY.register()
class TrainingSampler(TrainSampler):
    """A fresh permutation of all images per epoch; rank r takes every world_size-th index from r.

    When the dataset size is not a multiple of ``world_size`` the permutation is extended with its
    own first indices so that every rank yields ``ceil(size / world_size)`` indices. The loader
    should batch with ``self.batch_size`` (= batch_size / world_size) and drop the last partial batch.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(seed, rank, world_size)
        if size < 1:
            raise ValueError(f"TrainingSampler: the training set is empty (size {size})")
        if batch_size < 1 or batch_size % world_size != 0:
            raise ValueError(
                f"TrainingSampler: the batch size ({batch_size}, SOLVER.IMS_PER_BATCH) must be a positive multiple "
                f"of the world size {world_size}"
            )
        self.size = size
        self.batch_size = batch_size // world_size
        self.num_samples = math.ceil(size / world_size)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
    ) -> TrainingSampler:
        return cls(
            len(records),
            batch_size=cfg.SOLVER.IMS_PER_BATCH,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        order = self._rng().permutation(self.size)
        order = np.resize(order, self.num_samples * self.world_size)
        return iter(order[self.rank :: self.world_size].tolist())
