"""The loss set: every loss named in MODEL.LOSSES.NAME, each weighted by its block's SCALE."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

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


LOSS_REGISTRY = Registry("LOSS")
LOSS_REGISTRY.__doc__ = """Registered loss modules.

A loss module is built as ``cls(cfg)`` from the whole config, reads its own block
``cfg.MODEL.LOSSES.<cls.cfg_key>`` and the tensors it needs from the model's outputs dict, and
returns the unweighted loss. Class attributes: ``cfg_key`` (its config block, e.g. "TRI") and
``log_name`` (the name its value is logged under, e.g. "loss_triplet").
"""


class LossSet(nn.Module):
    """Applies every configured loss to the outputs dict; weights come from the config or a stage.

    The loss modules are children of this module (``self.losses``), so their parameters (centers,
    proxies, learnable scales, MPN's mapping) belong to the model, its optimiser and checkpoints.
    """

    def __init__(self, cfg: CfgNode, feat_dim: int | None = None) -> None:
        """``feat_dim``: the head's output dim, for losses whose parameters depend on it (centers,
        proxies, MPN's mapping) when their FEAT_DIM key is 0; see ``resolve_feat_dim``."""
        super().__init__()
        self.losses = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        log_names: dict[str, str] = {}
        for name in cfg.MODEL.LOSSES.NAME:
            if name in self.losses:
                raise ValueError(f"MODEL.LOSSES.NAME lists '{name}' twice")
            try:
                cls = LOSS_REGISTRY.get(name)
            except RegistryKeyError as e:
                raise RegistryKeyError(f"MODEL.LOSSES.NAME: {e}") from None
            if cls.cfg_key not in cfg.MODEL.LOSSES:
                raise KeyError(
                    f"loss '{name}' reads the config block MODEL.LOSSES.{cls.cfg_key}, which the config lacks"
                )
            if cls.log_name in log_names:
                raise ValueError(
                    f"MODEL.LOSSES.NAME lists '{log_names[cls.log_name]}' and '{name}', which are the same loss "
                    f"(both logged as '{cls.log_name}'); list it once"
                )
            log_names[cls.log_name] = name
            uses_dim = getattr(cls, "uses_feat_dim", False) and feat_dim is not None
            self.losses[name] = cls(cfg, feat_dim=feat_dim) if uses_dim else cls(cfg)
            self.weights[name] = float(cfg.MODEL.LOSSES[cls.cfg_key].SCALE)

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: torch.Tensor,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss values keyed by each loss's ``log_name``.

        ``weights`` (registered name -> weight) replaces the config's SCALEs, e.g. for a training
        stage; a loss given weight 0 or left out of ``weights`` is not computed.
        """
        active = self.weights if weights is None else weights
        unknown = set(active) - set(self.losses)
        if unknown:
            raise KeyError(
                f"loss weights name losses that are not built: {sorted(unknown)}; built: {list(self.losses)}"
            )
        values: dict[str, torch.Tensor] = {}
        for name, weight in active.items():
            if weight == 0:
                continue
            module = self.losses[name]
            values[module.log_name] = weight * module(outputs, targets)
        return values


def build_losses(cfg: CfgNode, feat_dim: int | None = None) -> LossSet:
    return LossSet(cfg, feat_dim)
