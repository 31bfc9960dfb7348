"""What every meta-architecture shares: pixel normalisation, the batch on the model's device, the
loss set."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, InvalidArgument
from reid.modeling.losses import LossSet
from reid.structures import BatchKeys

from .build import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, MODEL_CONFIG

logger = logging.getLogger(__name__)


class MetaArchBase(nn.Module):
    """Images in 0..255 -> ``(x - pixel_mean) / pixel_std`` on the model's device, and the losses.

    A subclass registers its modules after calling this constructor and sets ``loss_set`` last
    (the registration order is the parameter order that optimiser checkpoints rely on).

    Args:
        pixel_mean: The per-channel mean (R, G, B) on the 0..255 scale.
        pixel_std: The per-channel standard deviation (R, G, B); positive.
    """

    config_block = MODEL_CONFIG
    loss_set: LossSet
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        pixel_mean: Sequence[float] = IMAGENET_PIXEL_MEAN,
        pixel_std: Sequence[float] = IMAGENET_PIXEL_STD,
    ) -> None:
        super().__init__()
        if len(pixel_mean) != 3:
            raise InvalidArgument("pixel_mean", f"must have 3 values, got {list(pixel_mean)}")
        if len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise InvalidArgument(
                "pixel_std", f"must have 3 values, all positive, got {list(pixel_std)}"
            )
        # Not persistent: the config, not the checkpoint, defines the normalisation.
        for name, values in (("pixel_mean", pixel_mean), ("pixel_std", pixel_std)):
            tensor = torch.tensor(list(values), dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer(name, tensor, persistent=False)

    @staticmethod
    def pixel_arguments(cfg: CfgNode) -> ConfigArgs:
        """``pixel_mean`` and ``pixel_std`` from MODEL.PIXEL_MEAN / PIXEL_STD."""
        return MODEL_CONFIG.arguments(cfg, skip=("DEVICE", "META_ARCHITECTURE", "WEIGHTS"))

    @property
    def device(self) -> torch.device:
        """The device of the model (of its normalisation buffers)."""
        return self.pixel_mean.device

    def preprocess_image(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's images on the model's device, as floats, normalised.

        Raises:
            ValueError: ``batch["images"]`` is not a B x 3 x H x W tensor.
        """
        images = batch.get(BatchKeys.IMAGES) if isinstance(batch, Mapping) else None
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(
                f"batch['{BatchKeys.IMAGES}'] must be a B x 3 x H x W tensor with values in "
                f"0..255, got {got}"
            )
        images = images.to(self.device, dtype=self.pixel_mean.dtype, non_blocking=True)
        return (images - self.pixel_mean) / self.pixel_std

    def batch_targets(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's identity labels on the model's device (training needs them).

        Raises:
            ValueError: The batch has no ``targets`` tensor.
        """
        targets = batch.get(BatchKeys.TARGETS)
        if not isinstance(targets, torch.Tensor):
            raise ValueError(
                f"training mode needs batch['{BatchKeys.TARGETS}'], the int64 identity labels of "
                f"the images"
            )
        return targets.to(self.device, non_blocking=True)

    def losses(
        self,
        outputs: Mapping[str, Any],
        targets: torch.Tensor,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted loss values by log name (see :class:`LossSet`).

        Args:
            outputs: The model's training outputs.
            targets: The identity labels.
            weights: Registered loss name -> weight, replacing the configured ones (a stage).
        """
        return self.loss_set(outputs, targets.to(self.device), weights)
