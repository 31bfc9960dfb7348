"""The Baseline meta-architecture: backbone + head (the bag-of-tricks network and the papers' single-branch ones)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from yacs.config import CfgNode

from reid.modeling.backbones import build_backbone
from reid.modeling.heads import build_heads
from reid.modeling.losses import build_losses

from .base import MetaArchBase, backbone_channels
from .build import META_ARCH_REGISTRY


@META_ARCH_REGISTRY.register()
class Baseline(MetaArchBase):
    """MODEL.BACKBONE -> MODEL.HEADS.

    ``forward(batch)``: training mode returns the head's outputs dict (see the head for its keys and
    its test feature); eval mode returns the head's test feature (B x D).
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        self.backbone = build_backbone(cfg)
        self.heads = build_heads(cfg, backbone_channels(cfg, self.backbone))
        self.loss_set = build_losses(cfg, feat_dim=self.heads.out_dim)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor | dict[str, torch.Tensor]:
        feature_map = self.backbone(self.preprocess_image(batch))
        if self.training:
            return self.heads(feature_map, self.batch_targets(batch))
        return self.heads(feature_map)
