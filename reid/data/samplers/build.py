"""The sampler registry and the training sampler named by DATALOADER.SAMPLER_TRAIN."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

from .base import TrainSampler

SAMPLER_CONFIG = declare(
    ConfigBlock(
        "DATALOADER",
        "The training sampler.",
        {
            "SAMPLER_TRAIN": Key(
                "TrainingSampler",
                'A registered sampler: "TrainingSampler" (shuffled images) or '
                '"NaiveIdentitySampler" (P identities x NUM_INSTANCE images per batch).',
            ),
        },
    )
)


def check_sampler_class(obj: Any) -> None:
    """The SAMPLER registry's contract (see :class:`~reid.data.samplers.base.TrainSampler`)."""
    if not (isinstance(obj, type) and issubclass(obj, TrainSampler)):
        raise TypeError(f"a registered sampler must be a TrainSampler subclass, got {obj!r}")
    if not callable(getattr(obj, "from_config", None)):
        raise TypeError(
            f"sampler {obj.__name__} must define from_config(cls, cfg, records, rank, world_size, "
            f"seed)"
        )


SAMPLER_REGISTRY = Registry("SAMPLER", contract=check_sampler_class)
SAMPLER_REGISTRY.__doc__ = """Training samplers: subclasses of :class:`.base.TrainSampler`.

A sampler yields dataset indices for one rank, has ``set_epoch(epoch)`` (the order is a function of
seed and epoch only), a fixed ``__len__`` (indices this rank yields per epoch) and ``batch_size``
(the per-rank batch size the loader must use); ``identity_batches`` says whether its batches are
P identities x K images. It is built with ``cls(cfg, records, rank=..., world_size=..., seed=...)``
through its ``from_config``.
"""


def sampler_class(name: str) -> type[TrainSampler]:
    """The registered sampler class ``name`` (DATALOADER.SAMPLER_TRAIN).

    What config checks and the engine ask of a sampler without building one, e.g. whether its
    batches are identity-complete:

    >>> sampler_class("NaiveIdentitySampler").identity_batches
    True
    >>> sampler_class("TrainingSampler").identity_batches
    False

    Raises:
        ConfigError: No sampler is registered under ``name``; the message names
            DATALOADER.SAMPLER_TRAIN and the registered names.
    """
    try:
        cls: type[TrainSampler] = SAMPLER_REGISTRY.get(name)
    except RegistryKeyError as e:
        raise ConfigError(f"{SAMPLER_CONFIG.full_key('SAMPLER_TRAIN')}: {e}") from None
    return cls


def build_train_sampler(
    cfg: CfgNode, records: Sequence[Any], rank: int, world_size: int, seed: int
) -> TrainSampler:
    """The sampler of DATALOADER.SAMPLER_TRAIN over ``records``, for one training process.

    Args:
        cfg: The whole config.
        records: The training records (objects with a ``pid``), indexed as the dataset is.
        rank: The process the sampler serves.
        world_size: The number of training processes.
        seed: Seed of the order (the trainer passes SEED).
    """
    # Built through its from_config (``configurable``), so typed as a plain factory.
    build: Callable[..., TrainSampler] = sampler_class(cfg.DATALOADER.SAMPLER_TRAIN)
    return build(cfg, records, rank=rank, world_size=world_size, seed=seed)
