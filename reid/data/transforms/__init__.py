"""Train and test image transforms, from plain arguments or INPUT.*."""

from .build import EvalTransform, TrainTransform, build_transforms

__all__ = ["EvalTransform", "TrainTransform", "build_transforms"]
