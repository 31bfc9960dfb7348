"""An out-of-tree loss: Ring loss (Zheng et al., CVPR 2018), one file with its config block.

Import this module before loading a config (``--import example_ring_loss`` on the command line)
and MODEL.LOSSES.NAME can name "RingLoss" and MODEL.LOSSES.RING.* its keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from reid.config import ConfigBlock, InvalidArgument, Key, configurable
from reid.modeling.losses import LOSS_REGISTRY
from reid.modeling.losses.base import FeatureLoss
from reid.structures import OutputKeys

RING_CONFIG = ConfigBlock(
    "MODEL.LOSSES.RING",
    "RingLoss: pulls the feature norms towards a learned radius R.",
    {
        "RADIUS": Key(1.0, "Initial value of the learned radius R."),
        "FEAT_KEY": Key(OutputKeys.FEATURES, "Outputs key of the features."),
        "SCALE": Key(0.01, "Weight of this loss in the total loss (the paper's lambda)."),
    },
)


def ring_loss(f: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``mean_i (|f_i| - R)^2 / 2``.

    >>> round(float(ring_loss(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor(2.0))), 4)
    2.5
    """
    return (f.norm(dim=1) - radius).pow(2).mean() / 2


@LOSS_REGISTRY.register()
class RingLoss(FeatureLoss):
    """Ring loss on ``outputs[feat_key]`` with a learned radius.

    Args:
        radius: Initial radius.
        feat_key: Outputs key of the features.
    """

    config_block = RING_CONFIG
    log_name = "loss_ring"

    @configurable
    def __init__(self, radius: float = 1.0, feat_key: str = OutputKeys.FEATURES) -> None:
        super().__init__(feat_key)
        if not radius > 0:
            raise InvalidArgument("radius", f"must be positive, got {radius}")
        self.radius = nn.Parameter(torch.tensor(float(radius)))

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return ring_loss(self.features(outputs), self.radius)
