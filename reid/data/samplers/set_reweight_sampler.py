"""fastreid's SetReWeightSampler: every batch draws a fixed number of identities from each set."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable

from .build import SAMPLER_REGISTRY
from .identity_sampler import IDENTITY_SAMPLER_CONFIG, NaiveIdentitySampler

SET_WEIGHT_CONFIG = ConfigBlock(
    "DATALOADER",
    "SetReWeightSampler: identities per batch from each set.",
    {
        "SET_WEIGHT": Key(
            [],
            "SetReWeightSampler: identities drawn per batch from each set, one whole number per "
            "set; set s = the training images of camera id s (fastreid's rule; camera ids "
            "0..S-1). P = IMS_PER_BATCH / NUM_INSTANCE must be a multiple m of the sum; each set "
            "then gives m x its weight identities.",
        ),
    },
)


@SAMPLER_REGISTRY.register()
class SetReWeightSampler(NaiveIdentitySampler):
    """P identities x K images per batch, a fixed share of the identities from each set.

    As in fastreid, a set is a camera id (multi-set training gives each set its own camera id)
    and ``set_weight[s]`` identities of every batch come from set s, each drawn among the set's
    identities with probability proportional to its number of images in the set. Unlike
    fastreid 1.4.0, whose sampler never yields a batch (it asserts batch > sum x K but yields
    only batches of exactly sum x K images), P may be any multiple m of sum(set_weight), every
    set then giving m x its weight; and an identity appears once per batch: the sets are drawn
    in order 0..S-1, each among the identities not yet in the batch. The identities of a batch
    are then shuffled (fastreid shuffles the batch's images; whole identities stay together
    here, so that ranks and gradient-accumulation steps get whole identities). Each identity
    contributes K images as in :class:`NaiveIdentitySampler`, which also gives the epoch length
    (batches are drawn independently; ``epoch_length`` only sets how many), the rank split and
    the seeding.

    Args:
        pids: The identity of every training image, in dataset order.
        camids: The set (camera id, 0..S-1) of every training image, in dataset order.
        set_weight: Identities per batch from each set 0..S-1 (DATALOADER.SET_WEIGHT).
        batch_size: Images per global batch, P x K (SOLVER.IMS_PER_BATCH).
        num_instance: K, images per identity in a batch (DATALOADER.NUM_INSTANCE).
        seed: Seed of the order.
        rank: The process this sampler serves.
        world_size: The number of training processes; must divide P.
        epoch_length: "identities" or "images" (DATALOADER.EPOCH_LENGTH).
    """

    config_block = SET_WEIGHT_CONFIG
    identity_batches = True

    @configurable
    def __init__(
        self,
        pids: Sequence[int],
        camids: Sequence[int],
        set_weight: Sequence[int],
        batch_size: int,
        num_instance: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_length: str = "identities",
    ) -> None:
        if len(camids) != len(pids):
            raise InvalidArgument(
                "camids", f"must give one set per image: {len(camids)} for {len(pids)} images"
            )
        weights = list(set_weight)
        if not weights or any(int(w) != w or w < 0 for w in weights) or sum(weights) == 0:
            raise InvalidArgument(
                "set_weight",
                f"must be whole numbers >= 0, one per set, with a positive sum; got {weights}",
            )
        super().__init__(pids, batch_size, num_instance, seed, rank, world_size, epoch_length)
        sets = sorted({int(c) for c in camids})
        if sets != list(range(len(weights))):
            raise InvalidArgument(
                "set_weight",
                f"gives {len(weights)} weights but the sets (camera ids) of the training images "
                f"are {_listing(sets)}; it needs one weight per set 0..S-1",
            )
        total = int(sum(weights))
        if self.num_pids_per_batch % total != 0:
            raise InvalidArgument(
                "set_weight",
                f"sums to {total}, which does not divide P = {self.num_pids_per_batch} "
                f"identities per batch (batch size {batch_size} / {num_instance} images each)",
            )
        rounds = self.num_pids_per_batch // total
        self.per_set = [rounds * int(w) for w in weights]
        position = {pid: i for i, pid in enumerate(self.pids)}
        self._members: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        for s in range(len(weights)):
            counts = Counter(position[int(p)] for p, c in zip(pids, camids) if int(c) == s)
            members = np.array(sorted(counts), dtype=np.int64)
            self._members.append(members)
            self._weights.append(np.array([counts[m] for m in members], dtype=np.float64))
            needed = sum(self.per_set[: s + 1])
            if self.per_set[s] and len(members) < needed:
                raise InvalidArgument(
                    "set_weight",
                    f"asks {self.per_set[s]} identities of set {s} per batch after "
                    f"{needed - self.per_set[s]} from the sets before it, but set {s} has only "
                    f"{len(members)} identities (at least {needed} guarantee a full batch)",
                )

    @classmethod
    def from_config(
        cls, cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
    ) -> ConfigArgs:
        """Arguments from DATALOADER.SET_WEIGHT / NUM_INSTANCE / EPOCH_LENGTH,
        SOLVER.IMS_PER_BATCH and the records' identities and cameras.

        Args:
            cfg: The whole config.
            records: The training records (objects with a ``pid`` and a ``camid``).
            rank: The process the sampler serves.
            world_size: The number of training processes.
            seed: Seed of the order.
        """
        args = IDENTITY_SAMPLER_CONFIG.arguments(cfg).update_from(SET_WEIGHT_CONFIG.arguments(cfg))
        args.set("pids", [r.pid for r in records]).set("camids", [r.camid for r in records])
        args.set("batch_size", cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        return args.set("seed", seed).set("rank", rank).set("world_size", world_size)

    def _batch_identities(self, rng: np.random.Generator) -> np.ndarray:
        """The P identities (positions in ``self.pids``) of one batch, shuffled."""
        chosen: list[int] = []
        for members, weights, count in zip(self._members, self._weights, self.per_set):
            if count == 0:
                continue
            free = ~np.isin(members, chosen)
            p = weights[free] / weights[free].sum()
            chosen.extend(int(i) for i in rng.choice(members[free], size=count, replace=False, p=p))
        return rng.permutation(np.asarray(chosen, dtype=np.int64))

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches over all ranks: P x K dataset indices each, identity by identity."""
        rng = self._rng()
        batches = []
        for _ in range(self.num_batches):
            identities = self._batch_identities(rng)
            batches.append([int(i) for g in identities for i in self._draw_identity(rng, int(g))])
        return batches


def _listing(values: list[int]) -> str:
    return str(values) if len(values) <= 12 else f"[{values[0]}, ..., {values[-1]}] ({len(values)})"
