"""The backbone registry, the keys every backbone shares, and ``build_backbone``."""

from __future__ import annotations

import logging

from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

logger = logging.getLogger(__name__)

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
                2048,
                (
                    "Channels of the backbone's feature map (2048 for ResNet-50/101, 512 for "
                    "18/34); must match the backbone (0 = take it from the backbone)."
                ),
            ),
            "NORM": Key("BN", 'Normalisation layer: "BN", "syncBN", "FrozenBN", "GN".'),
            "PRETRAIN": Key(
                False,
                (
                    "Load ImageNet weights: PRETRAIN_PATH if given, else the published file "
                    "(torchvision's resnet*.pth, IBN-Net's resnet*_ibn_a-*.pth with WITH_IBN) from "
                    "torch.hub.get_dir()/checkpoints, downloaded there when missing and the "
                    "network allows."
                ),
            ),
            "PRETRAIN_PATH": Key(
                "",
                'A local file of ImageNet weights to load instead (with PRETRAIN True); "" = the '
                "published file.",
            ),
        },
    )
)

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """Backbone builders ``f(cfg) -> nn.Module``, named by
MODEL.BACKBONE.NAME as fastreid names them.

A backbone maps N x 3 x H x W normalised images to an N x C x h x w feature map and exposes
``out_channels`` (C), which the heads are built for (:class:`reid.structures.Backbone`).
"""


def build_backbone(cfg: CfgNode) -> nn.Module:
    """The backbone MODEL.BACKBONE.NAME, built from the config.

    Args:
        cfg: The whole config.

    Returns:
        The backbone, with ``out_channels``.

    Raises:
        RegistryKeyError: The name is not registered (the message names the key).
        ConfigError: MODEL.BACKBONE.FEAT_DIM is set and differs from the backbone's channels, or
            PRETRAIN_PATH is set without PRETRAIN.
    """
    name = BACKBONE_CONFIG.value(cfg, "NAME")
    path = BACKBONE_CONFIG.value(cfg, "PRETRAIN_PATH")
    if path and not BACKBONE_CONFIG.value(cfg, "PRETRAIN"):
        raise ConfigError(
            f"{BACKBONE_CONFIG.full_key('PRETRAIN_PATH')} is {path} but "
            f"{BACKBONE_CONFIG.full_key('PRETRAIN')} is False: nothing would load it; set "
            f"PRETRAIN True (fastreid's default is False) or clear the path"
        )
    try:
        builder = BACKBONE_REGISTRY.get(name)
    except RegistryKeyError as e:
        raise RegistryKeyError(f"{BACKBONE_CONFIG.full_key('NAME')}: {e}") from None
    backbone = builder(cfg)
    channels = getattr(backbone, "out_channels", None)
    if not isinstance(channels, int):
        raise TypeError(
            f"backbone '{name}' ({type(backbone).__name__}) must expose an int attribute "
            f"'out_channels' (the channels of its feature map)"
        )
    declared = int(BACKBONE_CONFIG.value(cfg, "FEAT_DIM"))
    if declared and declared != channels:
        raise ConfigError(
            f"{BACKBONE_CONFIG.full_key('FEAT_DIM')} is {declared} but the backbone ({name}, "
            f"DEPTH {cfg.MODEL.BACKBONE.get('DEPTH')}) gives {channels} channels; set it to "
            f"{channels} or 0 (inferred)"
        )
    return backbone
