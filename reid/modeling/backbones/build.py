"""The backbone registry: MODEL.BACKBONE.NAME -> a builder ``f(cfg) -> nn.Module``."""

from __future__ import annotations

from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry

BACKBONE_CONFIG = declare(
    ConfigBlock(
        "MODEL.BACKBONE",
        "The backbone: which one, its normalisation, its ImageNet weights.",
        {
            "NAME": Key(
                "build_resnet_backbone",
                "Registered backbone builder (BACKBONE registry), named as in fastreid.",
            ),
            "FEAT_DIM": Key(
                0,
                (
                    "Channels of the backbone's output feature map (2048 for ResNet-50/101, 512 "
                    "for 18/34); 0 = taken from the backbone. A non-zero value must match the "
                    "backbone (checked at build time)."
                ),
            ),
            "NORM": Key(
                "BN",
                'Normalisation layer: "BN", "syncBN", "FrozenBN", "GN".',
            ),
            "PRETRAIN": Key(
                True,
                (
                    "Load ImageNet weights: PRETRAIN_PATH if given, else the published file "
                    "(torchvision's resnet*.pth, IBN-Net's resnet*_ibn_a-*.pth with WITH_IBN) "
                    "from torch.hub.get_dir()/checkpoints, downloaded there when missing and the "
                    "network allows."
                ),
            ),
            "PRETRAIN_PATH": Key(
                "",
                (
                    'A local file of ImageNet weights to load instead of the published one; "" = '
                    "the published file."
                ),
            ),
        },
    )
)


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
