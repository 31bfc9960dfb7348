"""Models: backbones, heads, layers, losses and the meta-architectures that combine them."""

from .backbones import BACKBONE_REGISTRY, build_backbone
from .heads import HEAD_REGISTRY, build_heads
from .losses import LOSS_REGISTRY, build_losses
from .meta_arch import META_ARCH_REGISTRY, build_model, resolve_device

__all__ = [
    "BACKBONE_REGISTRY",
    "HEAD_REGISTRY",
    "LOSS_REGISTRY",
    "META_ARCH_REGISTRY",
    "build_backbone",
    "build_heads",
    "build_losses",
    "build_model",
    "resolve_device",
]
