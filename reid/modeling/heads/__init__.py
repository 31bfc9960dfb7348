"""Heads: a backbone's feature map -> training outputs (features, logits, ...) or test feature."""

from reid.utils.registry import import_submodules

from .base import ReidHead
from .build import HEAD_REGISTRY, HEADS_CONFIG, build_heads
from .embedding_head import EmbeddingHead
from .ratio_head import RatioHead
from .unified_head import UnifiedHead

import_submodules(__name__, __path__)  # every component file registers itself

__all__ = [
    "HEADS_CONFIG",
    "HEAD_REGISTRY",
    "EmbeddingHead",
    "RatioHead",
    "ReidHead",
    "UnifiedHead",
    "build_heads",
]
