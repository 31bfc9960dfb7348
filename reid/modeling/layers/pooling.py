"""Global pooling of a feature map, N x C x H x W -> N x C x 1 x 1, by fastreid's names.

MODEL.HEADS.POOL_LAYER names the layer (see :func:`build_pooling`); only the GeM layers take an
argument, the power ``p`` (MODEL.HEADS.GEM_P).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, ConfigError, Key, configurable
from reid.modeling.losses.utils import check_positive
from reid.utils.registry import Registry, RegistryKeyError

logger = logging.getLogger(__name__)

POOLING_CONFIG = ConfigBlock(
    "MODEL.HEADS",
    "The heads' global pooling of the backbone's feature map.",
    {
        "POOL_LAYER": Key(
            "GlobalAvgPool",
            (
                'Registered pooling layer: "GlobalAvgPool", "GlobalMaxPool", "AdaptiveAvgMaxPool" '
                '(their sum), "GeneralizedMeanPooling" (GeM, fixed p), "GeneralizedMeanPoolingP" '
                '(GeM, learned p), "Identity" (none: for backbones that give N x C x 1 x 1, the '
                'ViT); fastreid\'s "FastGlobalAvgPool" is accepted.'
            ),
        ),
        "GEM_P": Key(3.0, "GeM power p (its initial value when learned); must be positive."),
    },
)

POOLING_REGISTRY = Registry("POOLING")
POOLING_REGISTRY.__doc__ = """Global pooling modules, named by MODEL.HEADS.POOL_LAYER.

A layer that reads keys has a ``from_config(cfg)`` (through ``@configurable``); the others take no
arguments.
"""


@POOLING_REGISTRY.register()
class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling."""

    config_block = POOLING_CONFIG

    def __init__(self) -> None:
        super().__init__(1)


@POOLING_REGISTRY.register()
class GlobalMaxPool(nn.AdaptiveMaxPool2d):
    """Global max pooling."""

    config_block = POOLING_CONFIG

    def __init__(self) -> None:
        super().__init__(1)


@POOLING_REGISTRY.register()
class AdaptiveAvgMaxPool(nn.Module):
    """Sum of global average and global max pooling (fastreid's AdaptiveAvgMaxPool)."""

    config_block = POOLING_CONFIG

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)


@POOLING_REGISTRY.register()
class GeneralizedMeanPooling(nn.Module):
    """GeM (Radenovic et al.): ``(mean x^p)^(1/p)`` per channel, inputs clamped at ``eps``; fixed p.

    Args:
        p: The power; must be positive (1 = average pooling).
        eps: The lower clamp of the inputs.
    """

    config_block = POOLING_CONFIG

    @configurable
    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p: float | nn.Parameter = check_positive("p", p)
        self.eps = eps

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """``p`` from MODEL.HEADS.GEM_P."""
        return POOLING_CONFIG.arguments(cfg, skip=("POOL_LAYER",), rename={"GEM_P": "p"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)


@POOLING_REGISTRY.register()
class GeneralizedMeanPoolingP(GeneralizedMeanPooling):
    """GeM with a learned power: ``p`` is a 1-element parameter initialised from ``p``.

    Args:
        p: The initial power; must be positive.
        eps: The lower clamp of the inputs.
    """

    @configurable
    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__(p, eps)
        self.p = nn.Parameter(torch.full((1,), float(p)))


@POOLING_REGISTRY.register()
class Identity(nn.Module):
    """No pooling: for a backbone whose output is already N x C x 1 x 1 (the ViT's class token),
    as fastreid's ``Identity`` pool layer."""

    config_block = POOLING_CONFIG

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2:] != (1, 1):
            raise ValueError(
                f'MODEL.HEADS.POOL_LAYER "Identity" expects an N x C x 1 x 1 feature map, got '
                f"{tuple(x.shape)}: choose a pooling layer (e.g. GlobalAvgPool)"
            )
        return x


POOLING_REGISTRY.register(GlobalAvgPool, name="FastGlobalAvgPool")


def build_pooling(cfg: CfgNode) -> nn.Module:
    """The pooling layer MODEL.HEADS.POOL_LAYER, with its keys (MODEL.HEADS.GEM_P) when it has any.

    Args:
        cfg: The whole config.

    Returns:
        The pooling module.

    Raises:
        RegistryKeyError: The name is not registered (the message names the key).
        ConfigError: MODEL.HEADS.GEM_P is set for a layer without a power p.
    """
    name = POOLING_CONFIG.value(cfg, "POOL_LAYER")
    try:
        cls = POOLING_REGISTRY.get(name)
    except RegistryKeyError as e:
        raise RegistryKeyError(f"{POOLING_CONFIG.full_key('POOL_LAYER')}: {e}") from None
    if hasattr(cls, "from_config"):
        return cls(cfg)
    gem_p, default = POOLING_CONFIG.value(cfg, "GEM_P"), POOLING_CONFIG.keys["GEM_P"].default
    if gem_p != default:
        raise ConfigError(
            f"{POOLING_CONFIG.full_key('GEM_P')} is {gem_p}, but {name} "
            f"({POOLING_CONFIG.full_key('POOL_LAYER')}) has no power p; leave it at {default} or "
            f"use GeneralizedMeanPooling(P)"
        )
    return cls()
