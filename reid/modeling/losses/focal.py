"""Focal loss (Lin et al., ICCV 2017) on the classifier's logits, fastreid's ``focal_loss``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import WEIGHT, ReidLoss
from .build import LOSS_REGISTRY
from .utils import check_label_range

FL_CONFIG = ConfigBlock(
    "MODEL.LOSSES.FL",
    'FocalLoss: -ALPHA (1 - p_y)^GAMMA log p_y on outputs["logits"], averaged over the batch.',
    {
        "ALPHA": Key(0.25, "Weighting factor alpha in [0, 1] (one constant for every class)."),
        "GAMMA": Key(2.0, "Focusing parameter gamma >= 0 (0 = alpha times the cross-entropy)."),
        "SCALE": WEIGHT,
    },
)


def focal_loss(
    logits: torch.Tensor, y: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Mean over the batch of ``-alpha (1 - p_y)^gamma log p_y``, ``p = softmax(logits)``.

    fastreid's ``focal_loss`` (mean reduction), with ``log p`` from ``log_softmax`` (no ``-inf``
    where the probability underflows).

    Args:
        logits: B x C logits.
        y: B labels in [0, C).
        alpha: The weighting factor.
        gamma: The focusing parameter; >= 0.

    Returns:
        The 0-dim loss.

    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> round(float(focal_loss(logits, torch.tensor([0, 2]))), 4)
    0.1218
    """
    if logits.dim() != 2 or y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise ValueError(
            f"focal_loss: expected B x C logits and B labels, got {tuple(logits.shape)} and "
            f"{tuple(y.shape)}"
        )
    if gamma < 0:
        raise ValueError(f"focal_loss: gamma must be >= 0, got {gamma}")
    check_label_range(y, logits.shape[1], "focal_loss")
    log_p = F.log_softmax(logits, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
    return (-alpha * (1.0 - log_p.exp()).pow(gamma) * log_p).mean()


@LOSS_REGISTRY.register()
class FocalLoss(ReidLoss):
    """Focal loss on ``outputs["logits"]`` (see :func:`focal_loss`).

    Args:
        alpha: The weighting factor, in [0, 1].
        gamma: The focusing parameter, >= 0.
    """

    config_block = FL_CONFIG
    log_name = "loss_focal"

    @configurable
    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise InvalidArgument("alpha", f"must be in [0, 1], got {alpha}")
        if gamma < 0:
            raise InvalidArgument("gamma", f"must be >= 0, got {gamma}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return focal_loss(self.read(outputs, OutputKeys.LOGITS), targets, self.alpha, self.gamma)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"
