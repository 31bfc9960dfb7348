"""Train and test image transforms built from INPUT.*."""

from .build import build_transforms

__all__ = ["build_transforms"]
