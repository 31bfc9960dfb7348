"""The backbone registry: MODEL.BACKBONE.NAME -> a builder ``f(cfg) -> nn.Module``."""

from __future__ import annotations

from torch import nn
from yacs.config import CfgNode

from reid.utils.registry import Registry

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """Backbone builders ``f(cfg) -> nn.Module``, named as fastreid names them.

A backbone maps N x 3 x H x W normalised images to an N x C x h x w feature map and exposes
``out_channels`` (C), which the heads are built for.
"""


def build_backbone(cfg: CfgNode) -> nn.Module:
    backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)
    if not isinstance(getattr(backbone, "out_channels", None), int):
        raise TypeError(
            f"backbone '{cfg.MODEL.BACKBONE.NAME}' ({type(backbone).__name__}) must expose an int "
            f"attribute 'out_channels' (the channels of its feature map)"
        )
    return backbone
