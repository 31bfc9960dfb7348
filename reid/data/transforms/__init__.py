"""Train and test image transforms, from plain arguments or INPUT.*."""

from .affine import RandomAffine
from .augmix import AugMix
from .autoaugment import AutoAugment
from .build import EvalTransform, TrainTransform, build_transforms
from .color_jitter import ColorJitter
from .random_patch import RandomPatch
from .random_resized_crop import RandomResizedCrop

__all__ = [
    "AugMix",
    "AutoAugment",
    "ColorJitter",
    "EvalTransform",
    "RandomAffine",
    "RandomPatch",
    "RandomResizedCrop",
    "TrainTransform",
    "build_transforms",
]
