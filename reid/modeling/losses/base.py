"""Base classes of the registered loss modules.

A registered loss is one file: a pure function (tensors in, 0-dim tensor out) and a module that
declares its config block (with ``SCALE``, its weight in the total loss), takes plain constructor
arguments (``from_config`` reads them from the block) and reads what it needs from the model's
outputs dict; ``triplet.py`` is a complete example. The keys most blocks share (``FEAT_KEY``,
``SCALE``, ``FEAT_DIM``, ``SIM_SCALE`` / ``LEARN_SCALE``) are declared once here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, ConfigError, Key
from reid.structures import OutputKeys

FEAT_KEY = Key(
    OutputKeys.FEATURES,
    "Key of the model's outputs dict that the loss reads its B x D features from.",
)
WEIGHT = Key(1.0, "Weight of this loss in the total loss.")
FEAT_DIM = Key(
    0,
    "Dimension of the features the loss's parameters are built for; 0 = the head's output dim.",
)


def sim_scale_keys(sim_scale: float, learn_scale: bool) -> dict[str, Key]:
    """The ``SIM_SCALE`` and ``LEARN_SCALE`` keys of a loss on scaled similarities."""
    return {
        "SIM_SCALE": Key(sim_scale, "Multiplier s of the similarities (temperature 1 / s)."),
        "LEARN_SCALE": Key(
            learn_scale, "Learn s as a parameter log s, initialised from SIM_SCALE."
        ),
    }


class ReidLoss(nn.Module):
    """A loss the loss set builds from ``MODEL.LOSSES.NAME``.

    Class attributes:
        config_block: The keys the loss reads; must contain ``SCALE``.
        log_name: The name its value is logged under ("loss_triplet").
        needs_positives: The loss is exactly 0 on a batch without two images of one identity
            (a config with P x K batches of K = 1 is then refused).
    """

    config_block: ClassVar[ConfigBlock]
    log_name: ClassVar[str]
    needs_positives: ClassVar[bool] = False

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        """Constructor arguments: every key of the block but ``SCALE``, lower-cased.

        Args:
            cfg: The whole config.
            feat_dim: The head's output dim, for losses whose parameters depend on it.
        """
        return cls.config_block.arguments(cfg, skip=("SCALE",))

    @classmethod
    def weight(cls, cfg: CfgNode) -> float:
        """The loss's weight in the total loss (its block's ``SCALE``)."""
        return float(cls.config_block.value(cfg, "SCALE"))

    def read(self, outputs: Mapping[str, Any], key: str) -> torch.Tensor:
        """``outputs[key]``, or an error naming the loss, the key and the keys there are."""
        if key not in outputs:
            raise KeyError(
                f"{type(self).__name__} reads '{key}' from the model outputs, but the outputs dict "
                f"has only: {sorted(outputs)}"
            )
        return outputs[key]


class FeatureLoss(ReidLoss):
    """A loss on a B x D feature tensor, ``outputs[feat_key]``.

    Args:
        feat_key: The outputs key of the features.
    """

    def __init__(self, feat_key: str = OutputKeys.FEATURES) -> None:
        super().__init__()
        self.feat_key = str(feat_key)

    def features(self, outputs: Mapping[str, Any]) -> torch.Tensor:
        """``outputs[feat_key]`` (see :meth:`ReidLoss.read`)."""
        return self.read(outputs, self.feat_key)


def check_loss_class(obj: Any) -> None:
    """The LOSS registry's contract (see :class:`ReidLoss`)."""
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise TypeError(f"a registered loss must be an nn.Module class, got {obj!r}")
    block = getattr(obj, "config_block", None)
    if not isinstance(block, ConfigBlock) or "SCALE" not in block.keys:
        raise TypeError(
            f"loss {obj.__name__} must declare a config_block (reid.config.ConfigBlock) with a "
            f"SCALE key, its weight in the total loss"
        )
    log_name = getattr(obj, "log_name", None)
    if not isinstance(log_name, str) or not log_name:
        raise TypeError(f"loss {obj.__name__} must set log_name, the name it is logged under")
    if not callable(getattr(obj, "from_config", None)):
        raise TypeError(f"loss {obj.__name__} must define from_config(cls, cfg, feat_dim=None)")


def num_classes_of(cfg: CfgNode, loss: str) -> int:
    """MODEL.HEADS.NUM_CLASSES, which the trainer sets from the training set.

    Raises:
        ConfigError: Naming ``loss`` when the number is not set (<= 0).
    """
    num_classes = int(cfg.MODEL.HEADS.NUM_CLASSES)
    if num_classes <= 0:
        raise ConfigError(
            f"{loss} needs the number of training identities, but MODEL.HEADS.NUM_CLASSES is "
            f"{num_classes}: the trainer sets it from the training set before building the model"
        )
    return num_classes


def feat_dim_of(cfg: CfgNode, block: ConfigBlock, loss: str, head_dim: int | None) -> int:
    """The dim of the features a loss with per-dimension parameters is built for.

    The first of: the block's FEAT_DIM if > 0; ``head_dim`` (the head's output dim);
    MODEL.HEADS.EMBEDDING_DIM if > 0; MODEL.BACKBONE.FEAT_DIM if > 0.

    Raises:
        ConfigError: FEAT_DIM < 0, or no source gives the dim.
    """
    dim = int(block.value(cfg, "FEAT_DIM"))
    if dim < 0:
        raise ConfigError(
            f"{block.full_key('FEAT_DIM')} must be >= 0 (0 = the head's output dim), got {dim}"
        )
    for candidate in (
        dim,
        head_dim or 0,
        int(cfg.MODEL.HEADS.EMBEDDING_DIM),
        int(cfg.MODEL.BACKBONE.FEAT_DIM),
    ):
        if candidate > 0:
            return candidate
    raise ConfigError(
        f"{loss} cannot infer the dim of its features: set {block.full_key('FEAT_DIM')} (or "
        f"MODEL.HEADS.EMBEDDING_DIM / MODEL.BACKBONE.FEAT_DIM), or build the losses with "
        f"build_losses(cfg, feat_dim=<the head's output dim>)"
    )
