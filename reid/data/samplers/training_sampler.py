"""Plain shuffled image indices, split across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, configurable

from .base import TrainSampler
from .build import SAMPLER_REGISTRY


@SAMPLER_REGISTRY.register()
class TrainingSampler(TrainSampler):
    """A fresh permutation of all images per epoch; rank r takes every world_size-th index from r.

    When the dataset size is not a multiple of ``world_size`` the permutation is extended with its
    own first indices so that every rank yields ``ceil(size / world_size)`` indices. The loader
    batches with ``self.batch_size`` (= batch_size / world_size) and drops the last partial batch.

    Args:
        size: The number of training images.
        batch_size: Images per global batch (SOLVER.IMS_PER_BATCH); a multiple of the world size.
        seed: Seed of the order.
        rank: The process this sampler serves.
        world_size: The number of training processes.
    """

    @configurable
    def __init__(
        self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(seed, rank, world_size)
        if size < 1:
            raise ValueError(f"TrainingSampler: the training set is empty (size {size})")
        if batch_size < 1 or batch_size % world_size != 0:
            raise ValueError(
                f"TrainingSampler: the batch size ({batch_size}, SOLVER.IMS_PER_BATCH) must be a "
                f"positive multiple of the world size {world_size}"
            )
        self.size = size
        self.batch_size = batch_size // world_size
        self.num_samples = math.ceil(size / world_size)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
    ) -> ConfigArgs:
        """Arguments from SOLVER.IMS_PER_BATCH and the number of ``records``.

        Args:
            cfg: The whole config.
            records: The training records.
            rank: The process the sampler serves.
            world_size: The number of training processes.
            seed: Seed of the order.
        """
        args = ConfigArgs().set("size", len(records))
        args.set("batch_size", cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        return args.set("seed", seed).set("rank", rank).set("world_size", world_size)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        order = self._rng().permutation(self.size)
        order = np.resize(order, self.num_samples * self.world_size)
        return iter(order[self.rank :: self.world_size].tolist())
