"""The unified-view paper's head (Zhang et al., MPN-tuplet): pooled feature -> reduction + BN = ReID feature x."""

from __future__ import annotations

import torch
from torch import nn
from yacs.config import CfgNode

from reid.modeling.layers import build_pooling, get_norm
from reid.modeling.layers.classifiers import build_classifier

from .build import HEAD_REGISTRY
from .embedding_head import reduction_layer

# The ReID feature size of the paper, used when MODEL.HEADS.EMBEDDING_DIM is 0.
UNIFIED_HEAD_DIM = 1024


@HEAD_REGISTRY.register()
class UnifiedHead(nn.Module):
    """pool -> 1x1 reduction to EMBEDDING_DIM (0 = 1024) -> BN = x -> classifier (MODEL.HEADS.CLS_LAYER).

    The paper puts every sub-sampling loss (triplet, N-tuplet, PN/MPN-tuplet) and the classifier on
    x, so ``features`` and ``neck_features`` are both x and the losses' default FEAT_KEY reads it.
    Test feature: x (EMBEDDING_DIM-d, not normalised; the evaluator's metric decides).
    """

    def __init__(self, cfg: CfgNode, in_channels: int) -> None:
        super().__init__()
        heads = cfg.MODEL.HEADS
        dim = heads.EMBEDDING_DIM or UNIFIED_HEAD_DIM
        if dim < 0:
            raise ValueError(
                f"MODEL.HEADS.EMBEDDING_DIM must be >= 0 (0 = {UNIFIED_HEAD_DIM}), got {heads.EMBEDDING_DIM}"
            )
        self.pool_layer = build_pooling(heads.POOL_LAYER, p=heads.GEM_P)
        self.reduction = reduction_layer(in_channels, dim)
        self.embedding_norm = get_norm(heads.NORM, dim)
        self.classifier = build_classifier(cfg, dim, heads.NUM_CLASSES)
        self.out_dim = dim

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self.embedding_norm(self.reduction(self.pool_layer(features))).flatten(1)
        if not self.training:
            return x
        outputs = {"features": x, "neck_features": x}
        outputs.update(self.classifier(x, targets))
        return outputs
