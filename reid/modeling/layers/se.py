"""Squeeze-and-excitation (Hu et al., CVPR 2018) on torchvision's implementation."""

from __future__ import annotations

import logging

from torchvision.ops.misc import SqueezeExcitation

logger = logging.getLogger(__name__)


class SELayer(SqueezeExcitation):
    """Channel gating: global average pool -> 1x1 conv C -> C/r -> ReLU -> 1x1 conv -> sigmoid,
    times the input.

    Args:
        channels: C.
        reduction: r (the hidden width is ``max(1, C // r)``).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__(channels, max(1, channels // reduction))
