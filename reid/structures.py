"""The names and interfaces that connect data, models, losses and the trainer.

A training batch is a dict with the :class:`BatchKeys`; a meta-architecture in training mode
returns a dict with the :class:`OutputKeys` its losses read (a loss's ``FEAT_KEY`` names one of
them); in eval mode it returns the test feature (B x D). The protocols below are what the
engine expects of the duck-typed parts: a backbone, a head, a training sampler, a stateful hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol, TypedDict, runtime_checkable

import torch

__all__ = [
    "Backbone",
    "Batch",
    "BatchKeys",
    "EpochSampler",
    "Head",
    "OutputKeys",
    "Outputs",
    "ReidModel",
    "Stateful",
]


class BatchKeys:
    """Keys of a batch from the data loaders."""

    IMAGES: Final = "images"  # B x 3 x H x W, float values in 0..255 (normalised by the model)
    TARGETS: Final = "targets"  # int64 identity labels (relabelled 0..C-1 for training)
    CAMIDS: Final = "camids"  # int64 camera ids, 0-based
    PATHS: Final = "img_paths"  # the image files


class Batch(TypedDict, total=False):
    """A batch; ``images`` is always there, ``targets`` in training and evaluation."""

    images: torch.Tensor
    targets: torch.Tensor
    camids: torch.Tensor
    img_paths: list[str]


class OutputKeys:
    """Keys of a meta-architecture's training outputs that reid's heads and losses share."""

    FEATURES: Final = "features"  # what metric losses read by default (MODEL.HEADS.NECK_FEAT)
    NECK_FEATURES: Final = "neck_features"  # the classifier's input
    LOGITS: Final = "logits"  # classifier logits after margin and scale (CE reads these)
    CLS_WEIGHT: Final = "cls_weight"  # C x D classifier weights (ratio loss)


Outputs = dict[str, Any]


@runtime_checkable
class Backbone(Protocol):
    """N x 3 x H x W normalised images -> N x C x h x w feature map, C = ``out_channels``."""

    out_channels: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ReidModel(Protocol):
    """A meta-architecture: ``model(batch)`` gives the outputs dict in training mode and the
    test feature in eval mode; ``losses`` weighs the loss set's values by log name."""

    def __call__(self, batch: Batch) -> Any: ...

    def losses(
        self, outputs: Outputs, targets: torch.Tensor, weights: Mapping[str, float] | None = None
    ) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class Head(Protocol):
    """Feature map -> outputs dict (training) or test feature (eval); ``out_dim``: feature size."""

    out_dim: int


@runtime_checkable
class EpochSampler(Protocol):
    """A training sampler whose order is a function of the seed and ``set_epoch``'s epoch."""

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class Stateful(Protocol):
    """Something a checkpoint saves and restores."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
