"""What every training sampler shares: seed, epoch, the rank it serves and its batch size."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from torch.utils.data import Sampler

from reid.config.schema import InvalidArgument


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class TrainSampler(Sampler[int]):
    """A finite, seeded, per-rank sampler: the indices of an epoch depend only on (seed, epoch).

    Randomness comes from a private ``numpy.random.Generator`` seeded with ``[seed, epoch]``,
    never from a global RNG, so every rank draws the same global order and keeps its own share.
    A subclass sets ``self.batch_size``, the per-rank batch size the loader must use.

    Class attributes:
        identity_batches: Whether every batch is identity-complete: P identities x K images, K
            being the instance's ``num_instance`` (what config checks and gradient accumulation
            rely on), instead of images in any order.
        epoch_lengths: The values of DATALOADER.EPOCH_LENGTH the sampler honours; "images" (one
            pass over the images, #images // IMS_PER_BATCH batches) by default.

    Args:
        seed: Seed of the order (>= 0).
        rank: The process this sampler serves, 0..world_size-1.
        world_size: The number of training processes.
    """

    identity_batches: ClassVar[bool] = False
    epoch_lengths: ClassVar[tuple[str, ...]] = ("images",)
    batch_size: int

    def __init__(self, seed: int, rank: int, world_size: int) -> None:
        if not _is_int(seed) or seed < 0:
            raise InvalidArgument("seed", f"must be an int >= 0, got {seed!r}")
        if not _is_int(world_size) or world_size < 1:
            raise InvalidArgument("world_size", f"must be an int >= 1, got {world_size!r}")
        if not _is_int(rank) or not 0 <= rank < world_size:
            raise InvalidArgument("rank", f"must be an int in [0, {world_size}), got {rank!r}")
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
