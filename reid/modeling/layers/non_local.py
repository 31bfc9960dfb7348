"""Non-local block (Wang et al., CVPR 2018), dot-product form as used by fastreid's ResNet."""

from __future__ import annotations

import logging

import torch
from torch import nn

from reid.config.schema import InvalidArgument

from .norm import get_norm

logger = logging.getLogger(__name__)


class NonLocalBlock(nn.Module):
    """``z = x + W(y)``, ``y_i = (1/N) sum_j theta(x_i) . phi(x_j) g(x_j)`` over N = H*W positions.

    The norm after ``W`` starts at zero weight and bias, so a new block is the identity and can be
    inserted into a pretrained network without changing its output.

    Args:
        in_channels: The channels of the input (and output).
        norm: The norm after ``W`` (see :func:`get_norm`).
        inter_channels: The channels ``theta``, ``phi`` and ``g`` map to; None = ``in_channels //
            2`` (Wang et al.). fastreid's ``Non_local`` uses 1 (its ``reduc_ratio // reduc_ratio``).
    """

    def __init__(
        self, in_channels: int, norm: str = "BN", inter_channels: int | None = None
    ) -> None:
        super().__init__()
        inter = max(1, in_channels // 2) if inter_channels is None else int(inter_channels)
        if inter <= 0:
            raise InvalidArgument("inter_channels", f"must be positive, got {inter_channels}")
        self.g = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(in_channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(in_channels, inter, kernel_size=1)
        out_norm = get_norm(norm, in_channels)
        for name in ("weight", "bias"):  # buffers in FrozenBN, parameters otherwise
            nn.init.zeros_(getattr(out_norm, name))
        self.W = nn.Sequential(nn.Conv2d(inter, in_channels, kernel_size=1), out_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g_x = self.g(x).flatten(2).transpose(1, 2)  # B x N x C'
        theta_x = self.theta(x).flatten(2).transpose(1, 2)  # B x N x C'
        phi_x = self.phi(x).flatten(2)  # B x C' x N
        affinity = torch.bmm(theta_x, phi_x) / phi_x.shape[-1]  # B x N x N
        y = torch.bmm(affinity, g_x).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.W(y)
