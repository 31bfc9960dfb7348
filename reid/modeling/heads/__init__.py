from .build import HEAD_REGISTRY, build_heads
from .embedding_head import EmbeddingHead
from .ratio_head import RatioHead
from .unified_head import UnifiedHead

__all__ = ["HEAD_REGISTRY", "EmbeddingHead", "RatioHead", "UnifiedHead", "build_heads"]
