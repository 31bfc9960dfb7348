"""The loss set: every loss named in MODEL.LOSSES.NAME, each weighted by its block's SCALE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, configurable, declare
from reid.utils.registry import Registry, RegistryKeyError

from .base import ReidLoss, check_loss_class

LOSSES_CONFIG = declare(
    ConfigBlock(
        "MODEL.LOSSES",
        "The loss set.",
        {
            "NAME": Key(
                ["CrossEntropyLoss"],
                "Registered loss names, combined as sum(SCALE_i * loss_i).",
            ),
        },
    )
)

LOSS_REGISTRY = Registry("LOSS", contract=check_loss_class)
LOSS_REGISTRY.__doc__ = """Registered losses: subclasses of :class:`.base.ReidLoss`.

A loss declares its config block (``config_block``, with ``SCALE``) and ``log_name``, is built
with ``cls(cfg, feat_dim=...)`` through its ``from_config``, and returns the unweighted loss from
``forward(outputs, targets)``.
"""


class LossSet(nn.Module):
    """Applies every configured loss to the outputs dict; weights come from the config or a stage.

    The loss modules are children of this module (``self.losses``), so their parameters (centers,
    proxies, learnable scales, MPN's mapping) belong to the model, its optimiser and checkpoints.

    Args:
        losses: Registered name -> loss module, in the order they are computed.
        weights: Registered name -> weight in the total loss (default 1 each).
    """

    @configurable
    def __init__(
        self, losses: Mapping[str, ReidLoss], weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(dict(losses))
        self.weights: dict[str, float] = {name: 1.0 for name in self.losses}
        self.weights.update({name: float(w) for name, w in (weights or {}).items()})
        log_names: dict[str, str] = {}
        for name, module in self.losses.items():
            log_name = getattr(module, "log_name", name)
            if log_name in log_names:
                raise ValueError(
                    f"the loss set holds '{log_names[log_name]}' and '{name}', which are the same "
                    f"loss (both logged as '{log_name}'); list it once"
                )
            log_names[log_name] = name

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> dict[str, Any]:
        """Every loss of MODEL.LOSSES.NAME built from its block, weighted by its SCALE.

        Args:
            cfg: The whole config.
            feat_dim: The head's output dim, for losses whose parameters depend on it (centers,
                proxies, MPN's mapping) when their FEAT_DIM key is 0.
        """
        losses: dict[str, ReidLoss] = {}
        weights: dict[str, float] = {}
        if not cfg.MODEL.LOSSES.NAME:
            raise ConfigError("MODEL.LOSSES.NAME must list at least one loss")
        for name in cfg.MODEL.LOSSES.NAME:
            if name in losses:
                raise ConfigError(f"MODEL.LOSSES.NAME lists '{name}' twice")
            try:
                loss_cls = LOSS_REGISTRY.get(name)
            except RegistryKeyError as e:
                raise RegistryKeyError(f"MODEL.LOSSES.NAME: {e}") from None
            losses[name] = loss_cls(cfg, feat_dim=feat_dim)
            weights[name] = loss_cls.weight(cfg)
        return {"losses": losses, "weights": weights}

    def forward(
        self,
        outputs: Mapping[str, Any],
        targets: torch.Tensor,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss values keyed by each loss's ``log_name``.

        Args:
            outputs: The model's training outputs.
            targets: The identity labels of the batch.
            weights: Registered name -> weight, replacing the configured ones (a training
                stage); a loss given weight 0 or left out is not computed.
        """
        active = self.weights if weights is None else weights
        unknown = set(active) - set(self.losses)
        if unknown:
            raise KeyError(
                f"loss weights name losses that are not built: {sorted(unknown)}; "
                f"built: {list(self.losses)}"
            )
        values: dict[str, torch.Tensor] = {}
        for name, weight in active.items():
            if weight == 0:
                continue
            module = self.losses[name]
            values[getattr(module, "log_name", name)] = weight * module(outputs, targets)
        return values


def build_losses(cfg: CfgNode, feat_dim: int | None = None) -> LossSet:
    """The loss set of MODEL.LOSSES (see :meth:`LossSet.from_config`)."""
    return LossSet(cfg, feat_dim=feat_dim)
