"""Instance-Batch Normalisation (IBN-a, Pan et al., "Two at Once", ECCV 2018)."""

from __future__ import annotations

import torch
from torch import nn

from .norm import get_norm


class IBN(nn.Module):
    """Instance norm on the first ``int(planes * ratio)`` channels, batch norm on the rest.

    The attribute names ``IN`` and ``BN`` are those of IBN-Net's published weights
    (``layer1.0.bn1.IN.weight``, ``layer1.0.bn1.BN.running_mean``, ...).
    """

    def __init__(self, planes: int, norm: str = "BN", ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        if not 0 < self.half < planes:
            raise ValueError(
                f"IBN needs 0 < int(planes * ratio) < planes, got planes={planes}, ratio={ratio}"
            )
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = get_norm(norm, planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(first.contiguous()), self.BN(second.contiguous())], dim=1)
