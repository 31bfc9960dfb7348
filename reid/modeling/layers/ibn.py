"""Instance-Batch Normalisation (IBN-a, Pan et al., "Two at Once", ECCV 2018)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from reid.config.schema import InvalidArgument

from .norm import get_norm

logger = logging.getLogger(__name__)


class IBN(nn.Module):
    """Instance norm on the first ``int(planes * ratio)`` channels, batch norm on the rest.

    The attribute names ``IN`` and ``BN`` are those of IBN-Net's published weights
    (``layer1.0.bn1.IN.weight``, ``layer1.0.bn1.BN.running_mean``, ...).

    Args:
        planes: The channels of the input.
        norm: The norm of the other channels (see :func:`get_norm`).
        ratio: The share of the channels that are instance-normalised.
    """

    def __init__(self, planes: int, norm: str = "BN", ratio: float = 0.5) -> None:
        super().__init__()
        self.instance_channels = int(planes * ratio)
        if not 0 < self.instance_channels < planes:
            raise InvalidArgument(
                "ratio",
                f"must give 0 < int(planes * ratio) < planes, got planes={planes}, ratio={ratio}",
            )
        self.IN = nn.InstanceNorm2d(self.instance_channels, affine=True)
        self.BN = get_norm(norm, planes - self.instance_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = [self.instance_channels, x.shape[1] - self.instance_channels]
        first, second = torch.split(x, split, dim=1)
        return torch.cat([self.IN(first.contiguous()), self.BN(second.contiguous())], dim=1)
