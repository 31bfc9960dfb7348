"""fastreid's BalancedIdentitySampler: P identities x K images, balanced over cameras."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, InvalidArgument, configurable

from .build import SAMPLER_REGISTRY
from .identity_sampler import NaiveIdentitySampler


@SAMPLER_REGISTRY.register()
class BalancedIdentitySampler(NaiveIdentitySampler):
    """A PK sampler whose K images of an identity favour cameras other than the first image's.

    fastreid's rule, per identity of a batch: one of its images is drawn at random; the other
    K - 1 are drawn from its images taken by *other* cameras than that one, without replacement
    when there are at least K such images, with replacement otherwise; an identity seen by a
    single camera draws them from its other images instead (same replacement rule), and an
    identity with one image repeats it K times.

    Identity passes are fastreid's too: the identities are shuffled and cut into groups of P; the
    n mod P left over are dropped from that pass (fastreid's ``drop_indices``), so a pass has
    floor(n / P) batches and every identity appears at most once in it. An epoch is one pass
    (``epoch_length="identities"``) or as many batches as one pass over the images
    (``"images"``, chaining freshly shuffled passes), as for :class:`NaiveIdentitySampler`,
    whose batch shape, rank split (rank r yields the r-th block of P / world_size whole
    identities of every global batch, fastreid's ``reorder_index``), seeding and checks it
    shares.

    Args:
        pids: The identity of every training image, in dataset order.
        camids: The camera of every training image, in dataset order.
        batch_size: Images per global batch, P x K (SOLVER.IMS_PER_BATCH).
        num_instance: K, images per identity in a batch (DATALOADER.NUM_INSTANCE).
        seed: Seed of the order.
        rank: The process this sampler serves.
        world_size: The number of training processes; must divide P.
        epoch_length: "identities" or "images" (DATALOADER.EPOCH_LENGTH).
    """

    identity_batches = True

    @configurable
    def __init__(
        self,
        pids: Sequence[int],
        camids: Sequence[int],
        batch_size: int,
        num_instance: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_length: str = "identities",
    ) -> None:
        if len(camids) != len(pids):
            raise InvalidArgument(
                "camids", f"must give one camera per image: {len(camids)} for {len(pids)} images"
            )
        super().__init__(pids, batch_size, num_instance, seed, rank, world_size, epoch_length)
        cams = np.asarray(camids, dtype=np.int64)
        self._cams = [cams[indices] for indices in self._indices]

    def _batches_per_pass(self) -> int:
        """floor(#ids / P): the identities left over by the last full group sit the pass out."""
        return len(self.pids) // self.num_pids_per_batch

    @classmethod
    def from_config(
        cls, cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
    ) -> ConfigArgs:
        """NaiveIdentitySampler's arguments and the records' cameras.

        Args:
            cfg: The whole config.
            records: The training records (objects with a ``pid`` and a ``camid``).
            rank: The process the sampler serves.
            world_size: The number of training processes.
            seed: Seed of the order.
        """
        args = super().from_config(cfg, records, rank, world_size, seed)
        return args.set("camids", [r.camid for r in records])

    def _identity_pass(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The identities shuffled, in groups of P; the remainder left out of this pass."""
        p = self.num_pids_per_batch
        order = rng.permutation(len(self.pids))
        return [order[start : start + p] for start in range(0, self.batches_per_pass * p, p)]

    def _draw_identity(self, rng: np.random.Generator, identity: int) -> np.ndarray:
        """K dataset indices: a random image, then K - 1 from other cameras (see the class)."""
        indices, cams = self._indices[identity], self._cams[identity]
        k = self.num_instance
        first = int(rng.integers(len(indices)))
        pool = np.flatnonzero(cams != cams[first])
        if len(pool) == 0:
            pool = np.delete(np.arange(len(indices)), first)
            if len(pool) == 0:
                return np.full(k, indices[first])
        rest = rng.choice(pool, size=k - 1, replace=len(pool) < k)
        return np.concatenate([indices[[first]], indices[rest]])
