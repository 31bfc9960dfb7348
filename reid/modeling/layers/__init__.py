"""Building blocks of the backbones and heads; classifier layers live in ``classifiers``."""

from .ibn import IBN
from .non_local import NonLocalBlock
from .norm import NORM_REGISTRY, FrozenBatchNorm, get_norm
from .pooling import POOLING_REGISTRY, build_pooling
from .se import SELayer

__all__ = [
    "IBN",
    "NORM_REGISTRY",
    "POOLING_REGISTRY",
    "FrozenBatchNorm",
    "NonLocalBlock",
    "SELayer",
    "build_pooling",
    "get_norm",
]
