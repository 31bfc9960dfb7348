"""Pair-wise CosFace loss: fastreid's ``pairwise_cosface`` (LOSSES.NAME "Cosface")."""

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

COSFACE_CONFIG = ConfigBlock(
    "MODEL.LOSSES.COSFACE",
    'Pair-wise CosFace loss (LOSSES.NAME "Cosface", fastreid\'s pairwise_cosface) on cosine '
    'similarities of the batch; the CosFace classifier is MODEL.HEADS.CLS_LAYER "CosFace".',
    {
        "MARGIN": Key(0.25, "Margin m added to every negative pair's similarity."),
        "GAMMA": Key(128.0, "Scale gamma of the pair similarities."),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


def pairwise_cosface_loss(
    f: torch.Tensor, y: torch.Tensor, margin: float = 0.25, gamma: float = 128.0
) -> torch.Tensor:
    """Pair-wise CosFace on cosine similarities ``s``.

    Per anchor ``softplus(LSE_P(-g s_p) + LSE_N(g (s_n + m)))`` over its positives (itself
    excluded) and negatives; the mean over the anchors that have both.

    Args:
        f: B x D features.
        y: B labels.
        margin: The margin ``m``.
        gamma: The scale ``g``.

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(pairwise_cosface_loss(f, torch.tensor([0, 0, 1, 1]), gamma=8.0)), 4)
    0.4651
    """
    check_features_labels(f, y, "pairwise_cosface_loss")
    sim = cosine_matrix(f, f)
    pos, neg = same_label_masks(y)
    lse_p = masked_logsumexp(-gamma * sim, pos, dim=1)
    lse_n = masked_logsumexp(gamma * (sim + margin), neg, dim=1)
    return softplus_pair_loss(lse_p, lse_n, pos, neg)


@LOSS_REGISTRY.register(name="Cosface")
class PairwiseCosFaceLoss(FeatureLoss):
    """Pair-wise CosFace on ``outputs[feat_key]`` (see :func:`pairwise_cosface_loss`); registered
    under fastreid's name "Cosface".

    Args:
        margin: The margin ``m``.
        gamma: The scale of the pair similarities; must be positive.
        feat_key: The outputs key of the features.
    """

    config_block = COSFACE_CONFIG
    log_name = "loss_cosface"
    needs_positives = True

    @configurable
    def __init__(
        self, margin: float = 0.25, gamma: float = 128.0, feat_key: str = OutputKeys.FEATURES
    ) -> None:
        super().__init__(feat_key)
        self.margin = float(margin)
        self.gamma = check_positive("gamma", gamma)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return pairwise_cosface_loss(self.features(outputs), targets, self.margin, self.gamma)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}"
