"""reid: config-driven training and evaluation of re-identification models.

``from reid import FeatureExtractor`` gives the features of your own images with a trained model
(see :mod:`reid.inference`); it is imported on first use, so ``import reid`` stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["FeatureExtractor", "FeatureModel", "__version__"]

_LAZY = {"FeatureExtractor": "reid.inference", "FeatureModel": "reid.inference"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reid' has no attribute {name!r}")
