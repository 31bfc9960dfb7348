"""What every training sampler shares: seed, epoch and the rank it serves."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class TrainSampler(Sampler[int]):
    """A finite, seeded, per-rank sampler: the indices of an epoch depend only on (seed, epoch).

    Randomness comes from a private ``numpy.random.Generator`` seeded with ``[seed, epoch]``,
    never from a global RNG, so every rank draws the same global order and keeps its own share.
    """

    def __init__(self, seed: int, rank: int, world_size: int) -> None:
        name = type(self).__name__
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"{name}: seed must be an int >= 0, got {seed!r}")
        if not _is_int(world_size) or world_size < 1:
            raise ValueError(f"{name}: world_size must be an int >= 1, got {world_size!r}")
        if not _is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"{name}: rank must be an int in [0, {world_size}), got {rank!r}")
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next ``iter()`` yields (call before each epoch)."""
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(
                f"{type(self).__name__}.set_epoch: epoch must be an int >= 0, got {epoch!r}"
            )
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])
