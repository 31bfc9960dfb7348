"""The Baseline meta-architecture: backbone + head (the bag-of-tricks network and the papers'
single-branch ones)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, configurable
from reid.modeling.backbones import build_backbone
from reid.modeling.heads import build_heads
from reid.modeling.losses import LossSet, build_losses

from .base import MetaArchBase
from .build import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, META_ARCH_REGISTRY

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class Baseline(MetaArchBase):
    """Backbone -> head.

    ``forward(batch)``: in training mode the head's outputs dict (see the head for its keys and
    its test feature); in eval mode the head's test feature (B x D).

    Args:
        backbone: Normalised images -> feature map (:class:`reid.structures.Backbone`).
        heads: Feature map -> outputs dict or test feature (:class:`reid.structures.Head`).
        loss_set: The losses on the outputs dict.
        pixel_mean: The per-channel mean (R, G, B) on the 0..255 scale.
        pixel_std: The per-channel standard deviation (R, G, B).
    """

    @configurable
    def __init__(
        self,
        backbone: nn.Module,
        heads: nn.Module,
        loss_set: LossSet,
        *,
        pixel_mean: Sequence[float] = IMAGENET_PIXEL_MEAN,
        pixel_std: Sequence[float] = IMAGENET_PIXEL_STD,
    ) -> None:
        super().__init__(pixel_mean, pixel_std)
        self.backbone = backbone
        self.heads = heads
        self.loss_set = loss_set

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """MODEL.BACKBONE, MODEL.HEADS (for the backbone's channels) and MODEL.LOSSES (for the
        head's output dim), built in that order, and the pixel normalisation.

        Args:
            cfg: The whole config.
        """
        backbone = build_backbone(cfg)
        heads = build_heads(cfg, cast(int, backbone.out_channels))
        loss_set = build_losses(cfg, feat_dim=cast(int, heads.out_dim))
        args = cls.pixel_arguments(cfg)
        return args.set("backbone", backbone).set("heads", heads).set("loss_set", loss_set)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor | dict[str, torch.Tensor]:
        """The head's training outputs, or in eval mode its test feature.

        Args:
            batch: ``images`` (B x 3 x H x W in 0..255) and, in training, ``targets``.
        """
        feature_map = self.backbone(self.preprocess_image(batch))
        if self.training:
            return self.heads(feature_map, self.batch_targets(batch))
        return self.heads(feature_map)
