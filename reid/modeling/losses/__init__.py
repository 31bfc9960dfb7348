from .build import LOSS_REGISTRY, LossSet, build_losses

__all__ = ["LOSS_REGISTRY", "LossSet", "build_losses"]
