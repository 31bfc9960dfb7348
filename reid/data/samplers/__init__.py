"""Training samplers; ``build_train_sampler`` picks one by DATALOADER.SAMPLER_TRAIN."""

from reid.utils.registry import import_submodules

from .balanced_sampler import BalancedIdentitySampler
from .base import TrainSampler
from .build import SAMPLER_REGISTRY, build_train_sampler, sampler_class
from .identity_sampler import NaiveIdentitySampler
from .set_reweight_sampler import SetReWeightSampler
from .training_sampler import TrainingSampler

import_submodules(__name__, __path__)  # every component file registers itself

__all__ = [
    "SAMPLER_REGISTRY",
    "BalancedIdentitySampler",
    "NaiveIdentitySampler",
    "SetReWeightSampler",
    "TrainSampler",
    "TrainingSampler",
    "build_train_sampler",
    "sampler_class",
]
