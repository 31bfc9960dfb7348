"""Global pooling layers chosen by MODEL.HEADS.POOL_LAYER (fastreid's names); N x C x H x W -> N x C x 1 x 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid.utils.registry import Registry

POOLING_REGISTRY = Registry("POOLING")
POOLING_REGISTRY.__doc__ = (
    """Global pooling modules, built as ``cls(p=...)`` (only GeM layers use ``p``)."""
)


@POOLING_REGISTRY.register()
class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    def __init__(self, p: float = 3.0) -> None:
        super().__init__(1)


@POOLING_REGISTRY.register()
class GlobalMaxPool(nn.AdaptiveMaxPool2d):
    def __init__(self, p: float = 3.0) -> None:
        super().__init__(1)


@POOLING_REGISTRY.register()
class AdaptiveAvgMaxPool(nn.Module):
    """Sum of global average and global max pooling (fastreid's AdaptiveAvgMaxPool)."""

    def __init__(self, p: float = 3.0) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)


@POOLING_REGISTRY.register()
class GeneralizedMeanPooling(nn.Module):
    """GeM (Radenovic et al.): ``(mean x^p)^(1/p)`` per channel, inputs clamped at ``eps`` first; fixed p."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"MODEL.HEADS.GEM_P must be positive, got {p}")
        self.p: float | nn.Parameter = float(p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)


@POOLING_REGISTRY.register()
class GeneralizedMeanPoolingP(GeneralizedMeanPooling):
    """GeM with a learnable power p (a 1-element parameter initialised from MODEL.HEADS.GEM_P)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__(p, eps)
        self.p = nn.Parameter(torch.full((1,), float(p)))


POOLING_REGISTRY.register(GlobalAvgPool, name="FastGlobalAvgPool")


def build_pooling(name: str, p: float = 3.0) -> nn.Module:
    return POOLING_REGISTRY.get(name)(p=p)
