"""The PK sampler: batches of P identities x K images, every identity once per epoch."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable

from .base import TrainSampler
from .build import SAMPLER_REGISTRY

EPOCH_LENGTHS = ("images", "images_ceil", "identities")

IDENTITY_SAMPLER_CONFIG = ConfigBlock(
    "DATALOADER",
    "NaiveIdentitySampler: P identities x K images per batch.",
    {
        "NUM_INSTANCE": Key(4, "K of the PK sampler: images per identity in a batch."),
        "EPOCH_LENGTH": Key(
            "images",
            'Length of an epoch: "images" = one pass over the images as fastreid counts it, '
            '#images // IMS_PER_BATCH batches; "images_ceil" = ceil(#images / IMS_PER_BATCH) '
            'batches and at least one pass over the identities; "identities" = every identity '
            "once, ceil(#ids / P) batches. The PK sampler supports all three, TrainingSampler "
            '"images".',
        ),
    },
)


@SAMPLER_REGISTRY.register()
class NaiveIdentitySampler(TrainSampler):
    """P = batch_size / num_instance identities x K = num_instance images per (global) batch.

    An identity pass: the identities are shuffled and cut into groups of P; the last group, if
    short, is topped up with identities drawn at random from those not in it, so every batch is
    full and every identity appears in exactly one batch (the top-up ones in a second). Each
    identity contributes K images: K distinct ones drawn at random when it has at least K,
    otherwise all of its images plus K - n drawn with replacement. An epoch chains such passes,
    freshly shuffled, and cuts the last one short at its length (``epoch_length``):

    - "images": #images // (P K) batches, the iterations per epoch of fastreid (whose sampler is
      an endless stream of such passes). An epoch shorter than an identity pass leaves some
      identities for later epochs.
    - "images_ceil": ceil(#images / (P K)) batches, and at least one identity pass.
    - "identities": one identity pass, ceil(#identities / P) batches.

    With ``world_size`` ranks, each global batch's P identities are split into ``world_size``
    consecutive shares of P / world_size whole identities; rank r yields share r of every batch,
    i.e. consecutive chunks of ``self.batch_size = batch_size / world_size`` indices.

    Args:
        pids: The identity of every training image, in dataset order.
        batch_size: Images per global batch, P x K (SOLVER.IMS_PER_BATCH).
        num_instance: K, images per identity in a batch (DATALOADER.NUM_INSTANCE).
        seed: Seed of the order.
        rank: The process this sampler serves.
        world_size: The number of training processes; must divide P.
        epoch_length: "images", "images_ceil" or "identities" (DATALOADER.EPOCH_LENGTH, whose
            default is fastreid's "images").
    """

    config_block = IDENTITY_SAMPLER_CONFIG
    identity_batches = True
    epoch_lengths = EPOCH_LENGTHS

    @configurable
    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instance: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_length: str = "identities",
    ) -> None:
        super().__init__(seed, rank, world_size)
        if epoch_length not in EPOCH_LENGTHS:
            raise InvalidArgument(
                "epoch_length", f"must be one of {list(EPOCH_LENGTHS)}, got {epoch_length!r}"
            )
        if len(pids) == 0:
            raise ValueError(f"{type(self).__name__}: the training set is empty")
        self._check_batch_shape(batch_size, num_instance, world_size)
        self.num_instance = num_instance
        self.num_pids_per_batch = batch_size // num_instance
        self.pids_per_rank = self.num_pids_per_batch // world_size
        self.batch_size = self.pids_per_rank * num_instance

        index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            index_by_pid[int(pid)].append(index)
        self.pids = sorted(index_by_pid)
        self._indices = [np.asarray(index_by_pid[pid], dtype=np.int64) for pid in self.pids]
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(
                f"{type(self).__name__}: a batch needs P = {self.num_pids_per_batch} distinct "
                f"identities but the training set has only {len(self.pids)}; lower "
                f"SOLVER.IMS_PER_BATCH or raise DATALOADER.NUM_INSTANCE"
            )
        self.batches_per_pass = self._batches_per_pass()
        self.num_batches = self.batches_per_pass
        if epoch_length == "images_ceil":
            self.num_batches = max(self.batches_per_pass, math.ceil(len(pids) / batch_size))
        elif epoch_length == "images":
            self.num_batches = len(pids) // batch_size
            if self.num_batches == 0:
                raise InvalidArgument(
                    "epoch_length",
                    f"'images' gives #images // batch size = {len(pids)} // {batch_size} = 0 "
                    f"batches per epoch: the training set is smaller than one batch; lower "
                    f"SOLVER.IMS_PER_BATCH or use 'images_ceil' or 'identities'",
                )

    def _check_batch_shape(self, batch_size: int, num_instance: int, world_size: int) -> None:
        """P x K must fill the batch, and the world size must divide P (whole identities)."""
        if num_instance < 1 or batch_size < 1 or batch_size % num_instance != 0:
            raise ValueError(
                f"{type(self).__name__}: batch size ({batch_size}, SOLVER.IMS_PER_BATCH) must be a "
                f"positive multiple of the images per identity ({num_instance}, "
                f"DATALOADER.NUM_INSTANCE)"
            )
        p = batch_size // num_instance
        if p % world_size != 0:
            raise ValueError(
                f"{type(self).__name__}: P = {p} identities per batch (SOLVER.IMS_PER_BATCH "
                f"{batch_size} / DATALOADER.NUM_INSTANCE {num_instance}) must be divisible by the "
                f"world size {world_size}, so that every rank gets whole identities"
            )

    def _batches_per_pass(self) -> int:
        """Batches of one identity pass: the last group is topped up, so ceil(#ids / P)."""
        return math.ceil(len(self.pids) / self.num_pids_per_batch)

    @classmethod
    def from_config(
        cls, cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
    ) -> ConfigArgs:
        """Arguments from DATALOADER.NUM_INSTANCE / EPOCH_LENGTH and SOLVER.IMS_PER_BATCH.

        Args:
            cfg: The whole config.
            records: The training records (objects with a ``pid``).
            rank: The process the sampler serves.
            world_size: The number of training processes.
            seed: Seed of the order.
        """
        args = cls.config_block.arguments(cfg)
        args.set("pids", [r.pid for r in records])
        args.set("batch_size", cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        return args.set("seed", seed).set("rank", rank).set("world_size", world_size)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _draw(self, rng: np.random.Generator, indices: np.ndarray) -> np.ndarray:
        k = self.num_instance
        if len(indices) >= k:
            return rng.choice(indices, size=k, replace=False)
        extra = rng.choice(indices, size=k - len(indices), replace=True)
        return np.concatenate([rng.permutation(indices), extra])

    def _draw_identity(self, rng: np.random.Generator, identity: int) -> np.ndarray:
        """K dataset indices of ``self.pids[identity]``."""
        return self._draw(rng, self._indices[identity])

    def _identity_pass(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Every identity once, shuffled, in groups of P (the last topped up from the others)."""
        n, p = len(self.pids), self.num_pids_per_batch
        order = rng.permutation(n)
        groups = [order[start : start + p] for start in range(0, n, p)]
        short = p - len(groups[-1])
        if short > 0:
            outside = np.setdiff1d(np.arange(n), groups[-1])
            groups[-1] = np.concatenate(
                [groups[-1], rng.choice(outside, size=short, replace=False)]
            )
        return groups

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches over all ranks: P x K dataset indices each, identity by identity."""
        rng = self._rng()
        groups: list[np.ndarray] = []
        while len(groups) < self.num_batches:
            groups.extend(self._identity_pass(rng))
        return [
            [int(i) for g in group for i in self._draw_identity(rng, int(g))]
            for group in groups[: self.num_batches]
        ]

    def __iter__(self) -> Iterator[int]:
        start = self.rank * self.batch_size
        for batch in self.global_batches():
            yield from batch[start : start + self.batch_size]
