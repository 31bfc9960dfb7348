"""The training sampler named by DATALOADER.SAMPLER_TRAIN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Sampler
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

SAMPLER_CONFIG = declare(
    ConfigBlock(
        "DATALOADER",
        "The training sampler.",
        {
            "SAMPLER_TRAIN": Key(
                "NaiveIdentitySampler",
                (
                    '"NaiveIdentitySampler" (PK: P ids x NUM_INSTANCE images) or '
                    '"TrainingSampler" (shuffled images).'
                ),
            ),
        },
    )
)


SAMPLER_REGISTRY = Registry("SAMPLER")
SAMPLER_REGISTRY.__doc__ = """Training samplers: classes with ``from_config(cfg, records, rank, world_size, seed)``.

A sampler yields dataset indices for one rank, has ``set_epoch(epoch)`` (the order is a function of
seed and epoch only) and a fixed ``__len__`` (indices this rank yields per epoch); its attribute
``batch_size`` is the per-rank batch size the loader must use.
"""


def build_train_sampler(
    cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
) -> Sampler[int]:
    """The sampler over ``records`` (objects with a ``pid``) for process ``rank`` of ``world_size``."""
    try:
        sampler_cls = SAMPLER_REGISTRY.get(cfg.DATALOADER.SAMPLER_TRAIN)
    except RegistryKeyError as e:
        raise ConfigError(f"DATALOADER.SAMPLER_TRAIN: {e}") from e
    return sampler_cls.from_config(cfg, records, rank=rank, world_size=world_size, seed=seed)
