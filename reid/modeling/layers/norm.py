"""Normalisation layers chosen by name (MODEL.BACKBONE.NORM, MODEL.HEADS.NORM)."""

from __future__ import annotations

import logging

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from reid.utils.registry import Registry

logger = logging.getLogger(__name__)

NORM_REGISTRY = Registry("NORM")
NORM_REGISTRY.__doc__ = (
    """Factories ``f(num_channels) -> nn.Module`` of 2-D normalisation layers."""
)

# Groups of "GN" (detectron2 and fastreid use 32).
GN_NUM_GROUPS = 32

# Batch statistics and affine parameters held fixed (buffers, not parameters): torchvision's layer,
# which loads BatchNorm2d state dicts (it drops num_batches_tracked).
FrozenBatchNorm = FrozenBatchNorm2d


def _group_norm(num_channels: int) -> nn.GroupNorm:
    if num_channels % GN_NUM_GROUPS != 0:
        raise ValueError(
            f"norm 'GN' uses {GN_NUM_GROUPS} groups: the channel count {num_channels} is not "
            f"divisible by it"
        )
    return nn.GroupNorm(GN_NUM_GROUPS, num_channels)


NORM_REGISTRY.register(nn.BatchNorm2d, name="BN")
# Synchronised across processes under torch.distributed; a plain BatchNorm when not distributed.
NORM_REGISTRY.register(nn.SyncBatchNorm, name="syncBN")
NORM_REGISTRY.register(FrozenBatchNorm, name="FrozenBN")
NORM_REGISTRY.register(_group_norm, name="GN")


def get_norm(norm: str, num_channels: int, bias_freeze: bool = False) -> nn.Module:
    """A normalisation layer over the channels of N x C x H x W input.

    Args:
        norm: "BN", "syncBN", "FrozenBN" or "GN" (32 groups).
        num_channels: C.
        bias_freeze: Fix the shift parameter (the BN neck of the bag-of-tricks head); no effect on
            FrozenBN, whose parameters are all fixed.

    Returns:
        The layer.

    >>> gn = get_norm("GN", 64)
    >>> type(gn).__name__, gn.num_groups
    ('GroupNorm', 32)
    >>> get_norm("BN", 8, bias_freeze=True).bias.requires_grad
    False
    """
    module = NORM_REGISTRY.get(norm)(num_channels)
    if bias_freeze and isinstance(getattr(module, "bias", None), nn.Parameter):
        module.bias.requires_grad_(False)
    return module
