"""Building blocks of the backbones and heads: norms, IBN, SE, non-local, pooling, classifiers."""

from .classifiers import CLASSIFIER_REGISTRY, ClassifierFactory, build_classifier
from .ibn import IBN
from .non_local import NonLocalBlock
from .norm import NORM_REGISTRY, FrozenBatchNorm, get_norm
from .pooling import POOLING_REGISTRY, build_pooling
from .se import SELayer

__all__ = [
    "CLASSIFIER_REGISTRY",
    "IBN",
    "NORM_REGISTRY",
    "POOLING_REGISTRY",
    "ClassifierFactory",
    "FrozenBatchNorm",
    "NonLocalBlock",
    "SELayer",
    "build_classifier",
    "build_pooling",
    "get_norm",
]
