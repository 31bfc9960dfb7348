"""Training samplers; ``build_train_sampler`` picks one by DATALOADER.SAMPLER_TRAIN."""

from .base import TrainSampler
from .build import SAMPLER_REGISTRY, build_train_sampler
from .identity_sampler import NaiveIdentitySampler
from .training_sampler import TrainingSampler

__all__ = [
    "SAMPLER_REGISTRY",
    "NaiveIdentitySampler",
    "TrainSampler",
    "TrainingSampler",
    "build_train_sampler",
]
