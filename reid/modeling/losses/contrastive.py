"""Contrastive loss over all ordered pairs of the batch."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import check_features_labels, masked_mean, pairwise_distance, same_label_masks

CONTRASTIVE_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CONTRASTIVE",
    (
        "ContrastiveLoss over all pairs: positives [d - POS_MARGIN]_+, negatives "
        "[NEG_MARGIN - d]_+ (Euclidean d), each part averaged over its pairs."
    ),
    {
        "POS_MARGIN": Key(
            0.0,
            ("Positive pairs are pulled in until their distance is POS_MARGIN (0 = all the way)."),
        ),
        "NEG_MARGIN": Key(
            1.0,
            "Negative pairs are pushed out until their distance is NEG_MARGIN.",
        ),
        "SQUARED": Key(
            True,
            ("Square both parts and halve them (the survey's form: d^2 / 2 and [m - d]_+^2 / 2)."),
        ),
        "NORMALIZE": Key(
            False,
            "L2-normalise the features first.",
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


def contrastive_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    squared: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Mean over positive pairs (i != j) of ``[d - m_p]_+`` plus mean over negative pairs of
    ``[m_n - d]_+``, Euclidean ``d`` (on L2-normalised features when ``normalize``); ``squared``
    uses ``[.]_+^2 / 2`` for both parts (the survey's form with m_p = 0). A part with no pair is 0.
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
    """Contrastive loss on ``outputs[CONTRASTIVE.FEAT_KEY]``: POS_MARGIN, NEG_MARGIN, SQUARED, NORMALIZE."""

    cfg_key = "CONTRASTIVE"

    config_block = CONTRASTIVE_CONFIG
    log_name = "loss_contrastive"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.pos_margin = float(block.POS_MARGIN)
        self.neg_margin = float(block.NEG_MARGIN)
        self.squared = bool(block.SQUARED)
        self.normalize = bool(block.NORMALIZE)
        if self.pos_margin < 0 or self.neg_margin < 0:
            raise ValueError(
                f"{self.key('POS_MARGIN')} and {self.key('NEG_MARGIN')} must be >= 0, "
                f"got {self.pos_margin} and {self.neg_margin}"
            )

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(
            self.features(outputs),
            targets,
            self.pos_margin,
            self.neg_margin,
            self.squared,
            self.normalize,
        )

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, squared={self.squared}, normalize={self.normalize}"
