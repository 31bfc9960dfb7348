"""What every meta-architecture shares: pixel normalisation, moving the batch to the model, the loss set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.modeling.losses import LossSet


def backbone_channels(cfg: CfgNode, backbone: nn.Module) -> int:
    """The backbone's output channels, checked against MODEL.BACKBONE.FEAT_DIM when that is set."""
    channels = backbone.out_channels
    declared = cfg.MODEL.BACKBONE.FEAT_DIM
    if declared and declared != channels:
        raise ValueError(
            f"MODEL.BACKBONE.FEAT_DIM is {declared} but the backbone ({cfg.MODEL.BACKBONE.NAME}, "
            f"DEPTH {cfg.MODEL.BACKBONE.DEPTH}) gives {channels} channels; set it to {channels} or 0 (inferred)"
        )
    return channels


class MetaArchBase(nn.Module):
    """Images in 0..255 -> ``(x - PIXEL_MEAN) / PIXEL_STD`` on the model's device, and the losses.

    Subclasses build their heads, then ``self.loss_set = build_losses(cfg, feat_dim=<head output dim>)``
    (losses with per-dimension parameters, such as centers, are sized by it).
    """

    loss_set: LossSet

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        mean, std = cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(
                f"MODEL.PIXEL_MEAN / PIXEL_STD must have 3 values each, std positive; got {list(mean)} / {list(std)}"
            )
        # Not persistent: the config, not the checkpoint, defines the normalisation.
        self.register_buffer(
            "pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batch: Mapping[str, Any]) -> torch.Tensor:
        images = batch.get("images") if isinstance(batch, Mapping) else None
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(
                f"batch['images'] must be a B x 3 x H x W tensor with values in 0..255, got {got}"
            )
        images = images.to(self.device, dtype=self.pixel_mean.dtype, non_blocking=True)
        return (images - self.pixel_mean) / self.pixel_std

    def batch_targets(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``batch['targets']`` on the model's device; required in training mode (margin classifiers use it)."""
        targets = batch.get("targets")
        if not isinstance(targets, torch.Tensor):
            raise ValueError(
                "training mode needs batch['targets'], the int64 identity labels of the images"
            )
        return targets.to(self.device, non_blocking=True)

    def losses(
        self,
        outputs: Mapping[str, Any],
        targets: torch.Tensor,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss values by log name (``weights``: registered loss name -> weight, replacing the SCALEs)."""
        return self.loss_set(outputs, targets.to(self.device), weights)
