"""Meta-architectures: whole models (backbone, heads, losses) built from MODEL."""

from reid.utils.registry import import_submodules

from .base import MetaArchBase
from .baseline import Baseline
from .build import META_ARCH_REGISTRY, MODEL_CONFIG, build_model, resolve_device
from .mgn import MGN, MGN_CONFIG

import_submodules(__name__, __path__)  # every component file registers itself

__all__ = [
    "MGN",
    "MGN_CONFIG",
    "MODEL_CONFIG",
    "META_ARCH_REGISTRY",
    "Baseline",
    "MetaArchBase",
    "build_model",
    "resolve_device",
]
