"""Contrastive loss over all ordered pairs of the batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss
from .build import LOSS_REGISTRY
from .utils import check_features_labels, masked_mean, pairwise_distance, same_label_masks

CONTRASTIVE_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CONTRASTIVE",
    "ContrastiveLoss over all pairs: positives [d - POS_MARGIN]_+, negatives [NEG_MARGIN - d]_+ "
    "(Euclidean d), each part averaged over its pairs.",
    {
        "POS_MARGIN": Key(
            0.0,
            "Positive pairs are pulled in until their distance is POS_MARGIN (0 = all the way).",
        ),
        "NEG_MARGIN": Key(1.0, "Negative pairs are pushed out until their distance is NEG_MARGIN."),
        "SQUARED": Key(
            True,
            "Square both parts and halve them (the survey's form: d^2 / 2 and [m - d]_+^2 / 2).",
        ),
        "NORMALIZE": Key(False, "L2-normalise the features first."),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


def contrastive_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    squared: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Mean over positive pairs (i != j) of ``[d - m_p]_+`` plus mean over negative pairs of
    ``[m_n - d]_+``, Euclidean ``d``; a part with no pair is 0.

    Args:
        f: B x D features.
        y: B labels.
        pos_margin: ``m_p``.
        neg_margin: ``m_n``.
        squared: Use ``[.]_+^2 / 2`` for both parts (the survey's form with m_p = 0).
        normalize: L2-normalise the features first.

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(contrastive_loss(f, torch.tensor([0, 0, 1, 1]), neg_margin=1.0)), 4)
    0.6588
    """
    check_features_labels(f, y, "contrastive_loss")
    dist = pairwise_distance(f, f, "euclidean", normalize)
    pos, neg = same_label_masks(y)
    pos_term = F.relu(dist - pos_margin)
    neg_term = F.relu(neg_margin - dist)
    if squared:
        pos_term, neg_term = pos_term.pow(2) / 2, neg_term.pow(2) / 2
    return masked_mean(pos_term, pos) + masked_mean(neg_term, neg)


@LOSS_REGISTRY.register()
class ContrastiveLoss(FeatureLoss):
    """Contrastive loss on ``outputs[feat_key]`` (see :func:`contrastive_loss`).

    Args:
        pos_margin: Positive pairs are pulled in to this distance; must be >= 0.
        neg_margin: Negative pairs are pushed out to this distance; must be >= 0.
        squared: Square and halve both parts.
        normalize: L2-normalise the features first.
        feat_key: The outputs key of the features.
    """

    config_block = CONTRASTIVE_CONFIG
    log_name = "loss_contrastive"

    @configurable
    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        squared: bool = True,
        normalize: bool = False,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        for name, margin in (("pos_margin", pos_margin), ("neg_margin", neg_margin)):
            if margin < 0:
                raise InvalidArgument(name, f"must be >= 0, got {margin}")
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.squared = bool(squared)
        self.normalize = bool(normalize)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(
            self.features(outputs),
            targets,
            self.pos_margin,
            self.neg_margin,
            self.squared,
            self.normalize,
        )

    def extra_repr(self) -> str:
        return (
            f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, "
            f"squared={self.squared}, normalize={self.normalize}"
        )
