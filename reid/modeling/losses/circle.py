"""Pair-wise circle loss (Sun et al.), fastreid's ``CircleLoss``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reid.config.schema import ConfigBlock, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_features_labels,
    check_positive,
    cosine_matrix,
    masked_logsumexp,
    same_label_masks,
    softplus_pair_loss,
)

CIRCLE_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CIRCLE",
    "CircleLoss (pair-wise, on cosine similarities); the class-level circle is "
    'MODEL.HEADS.CLS_LAYER "Circle".',
    {
        "MARGIN": Key(
            0.25,
            "Relaxation m: optima 1 - m (positives) and m (negatives), "
            "alpha_p = [1 + m - s_p]_+, alpha_n = [s_n + m]_+.",
        ),
        "GAMMA": Key(128.0, "Scale gamma of the pair similarities."),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


def pairwise_circle_loss(
    f: torch.Tensor, y: torch.Tensor, margin: float = 0.25, gamma: float = 128.0
) -> torch.Tensor:
    """Pair-wise circle loss on cosine similarities ``s``.

    Per anchor ``softplus(LSE_P(-g a_p (s_p - (1 - m))) + LSE_N(g a_n (s_n - m)))`` with
    ``a_p = [1 + m - s_p]_+`` and ``a_n = [s_n + m]_+`` detached; the mean over the anchors that
    have a positive and a negative.

    Args:
        f: B x D features.
        y: B labels.
        margin: The relaxation ``m``.
        gamma: The scale ``g``.

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(pairwise_circle_loss(f, torch.tensor([0, 0, 1, 1]), gamma=8.0)), 4)
    1.6027
    """
    check_features_labels(f, y, "pairwise_circle_loss")
    sim = cosine_matrix(f, f)
    pos, neg = same_label_masks(y)
    alpha_p = (1.0 + margin - sim.detach()).clamp_min(0.0)
    alpha_n = (sim.detach() + margin).clamp_min(0.0)
    lse_p = masked_logsumexp(-gamma * alpha_p * (sim - (1.0 - margin)), pos, dim=1)
    lse_n = masked_logsumexp(gamma * alpha_n * (sim - margin), neg, dim=1)
    return softplus_pair_loss(lse_p, lse_n, pos, neg)


@LOSS_REGISTRY.register()
class CircleLoss(FeatureLoss):
    """Pair-wise circle loss on ``outputs[feat_key]`` (see :func:`pairwise_circle_loss`).

    Args:
        margin: The relaxation ``m``.
        gamma: The scale of the pair similarities; must be positive.
        feat_key: The outputs key of the features.
    """

    config_block = CIRCLE_CONFIG
    log_name = "loss_circle"
    needs_positives = True

    @configurable
    def __init__(
        self, margin: float = 0.25, gamma: float = 128.0, feat_key: str = OutputKeys.FEATURES
    ) -> None:
        super().__init__(feat_key)
        self.margin = float(margin)
        self.gamma = check_positive("gamma", gamma)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return pairwise_circle_loss(self.features(outputs), targets, self.margin, self.gamma)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}"
