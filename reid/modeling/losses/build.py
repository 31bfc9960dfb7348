"""The loss set: every loss named in MODEL.LOSSES.NAME, each weighted by its block's SCALE."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import nn
from yacs.config import CfgNode

from reid.utils.registry import Registry

LOSS_REGISTRY = Registry("LOSS")
LOSS_REGISTRY.__doc__ = """Registered loss modules.

A loss module is built as ``cls(cfg)`` from the whole config, reads its own block
``cfg.MODEL.LOSSES.<cls.cfg_key>`` and the tensors it needs from the model's outputs dict, and
returns the unweighted loss. Class attributes: ``cfg_key`` (its config block, e.g. "TRI") and
``log_name`` (the name its value is logged under, e.g. "loss_triplet").
"""


class LossSet(nn.Module):
    """Applies every configured loss to the outputs dict; weights come from the config or a stage."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        self.losses = nn.ModuleDict()
        self.weights: Dict[str, float] = {}
        for name in cfg.MODEL.LOSSES.NAME:
            loss = LOSS_REGISTRY.get(name)(cfg)
            if name in self.losses:
                raise ValueError(f"MODEL.LOSSES.NAME lists '{name}' twice")
            self.losses[name] = loss
            self.weights[name] = float(cfg.MODEL.LOSSES[loss.cfg_key].SCALE)

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: torch.Tensor,
        weights: Optional[Mapping[str, float]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Weighted loss values keyed by each loss's ``log_name``.

        ``weights`` (registered name -> weight) replaces the config's SCALEs, e.g. for a training
        stage; a loss given weight 0 or left out of ``weights`` is not computed.
        """
        active = self.weights if weights is None else weights
        unknown = set(active) - set(self.losses)
        if unknown:
            raise KeyError(f"loss weights name losses that are not built: {sorted(unknown)}; built: {list(self.losses)}")
        values: Dict[str, torch.Tensor] = {}
        for name, weight in active.items():
            if weight == 0:
                continue
            module = self.losses[name]
            values[module.log_name] = weight * module(outputs, targets)
        return values


def build_losses(cfg: CfgNode) -> LossSet:
    return LossSet(cfg)
