"""Pair-wise circle loss (Sun et al.), fastreid's ``CircleLoss``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_features_labels,
    cosine_matrix,
    masked_logsumexp,
    masked_mean,
    same_label_masks,
)

CIRCLE_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CIRCLE",
    (
        "CircleLoss (pair-wise, on cosine similarities); the class-level circle is "
        'MODEL.HEADS.CLS_LAYER "Circle".'
    ),
    {
        "MARGIN": Key(
            0.25,
            (
                "Relaxation m: optima 1 - m (positives) and m (negatives), alpha_p = [1 + m -"
                " s_p]_+, alpha_n = [s_n + m]_+."
            ),
        ),
        "GAMMA": Key(
            128.0,
            "Scale gamma of the pair similarities.",
        ),
        "FEAT_KEY": Key(
            "features",
            ("Key of the model's outputs dict that the loss reads its B x D features from."),
        ),
        "SCALE": Key(
            1.0,
            "Weight of this loss in the total loss.",
        ),
    },
)


def pairwise_circle_loss(
    f: torch.Tensor, y: torch.Tensor, margin: float = 0.25, gamma: float = 128.0
) -> torch.Tensor:
    """Per anchor ``softplus(LSE_P(-g a_p (s_p - (1 - m))) + LSE_N(g a_n (s_n - m)))`` on cosine
    similarities, ``a_p = [1 + m - s_p]_+`` and ``a_n = [s_n + m]_+`` detached; mean over anchors
    having a positive and a negative."""
    check_features_labels(f, y, "pairwise_circle_loss")
    sim = cosine_matrix(f, f)
    pos, neg = same_label_masks(y)
    alpha_p = (1.0 + margin - sim.detach()).clamp_min(0.0)
    alpha_n = (sim.detach() + margin).clamp_min(0.0)
    lse_p = masked_logsumexp(-gamma * alpha_p * (sim - (1.0 - margin)), pos, dim=1)
    lse_n = masked_logsumexp(gamma * alpha_n * (sim - margin), neg, dim=1)
    valid = pos.any(1) & neg.any(1)
    zeros = torch.zeros_like(lse_p)
    per_anchor = F.softplus(torch.where(valid, lse_p, zeros) + torch.where(valid, lse_n, zeros))
    return masked_mean(per_anchor, valid)


@LOSS_REGISTRY.register()
class CircleLoss(FeatureLoss):
    """Pair-wise circle loss on ``outputs[CIRCLE.FEAT_KEY]``: MARGIN, GAMMA."""

    cfg_key = "CIRCLE"

    config_block = CIRCLE_CONFIG
    log_name = "loss_circle"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.margin = float(block.MARGIN)
        self.gamma = float(block.GAMMA)
        if not self.gamma > 0:
            raise ValueError(f"{self.key('GAMMA')} must be positive, got {self.gamma}")

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return pairwise_circle_loss(self.features(outputs), targets, self.margin, self.gamma)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}"
