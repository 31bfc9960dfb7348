from .baseline import Baseline
from .build import META_ARCH_REGISTRY, build_model, resolve_device
from .mgn import MGN

__all__ = ["META_ARCH_REGISTRY", "Baseline", "MGN", "build_model", "resolve_device"]
