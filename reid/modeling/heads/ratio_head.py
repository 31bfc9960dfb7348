"""The ratio-loss paper's head (Yang et al. 2020): GAP -> BN -> FC -> BN -> L2 normalisation -> cosine classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.modeling.layers import build_pooling, get_norm
from reid.modeling.layers.classifiers import build_classifier

from .build import HEAD_REGISTRY
from .embedding_head import reduction_layer

# The feature size of the paper's FC layer, used when MODEL.HEADS.EMBEDDING_DIM is 0.
RATIO_HEAD_DIM = 1024


@HEAD_REGISTRY.register()
class RatioHead(nn.Module):
    """pool (MODEL.HEADS.POOL_LAYER, GAP in the paper) -> BN -> FC to EMBEDDING_DIM (0 = 1024) -> BN -> L2 norm.

    The classifier is MODEL.HEADS.CLS_LAYER ("NSL", the cosine classifier, in the paper). Training
    outputs: ``features`` (the embedding before L2 normalisation), ``neck_features`` (the
    L2-normalised embedding, the classifier's input), ``logits``, ``pred_logits``, ``cls_weight``.
    Test feature: the L2-normalised embedding (unit norm, EMBEDDING_DIM-d). The FC layer has no
    bias: the BN after it would cancel one.
    """

    def __init__(self, cfg: CfgNode, in_channels: int) -> None:
        super().__init__()
        heads = cfg.MODEL.HEADS
        dim = heads.EMBEDDING_DIM or RATIO_HEAD_DIM
        if dim < 0:
            raise ValueError(
                f"MODEL.HEADS.EMBEDDING_DIM must be >= 0 (0 = {RATIO_HEAD_DIM}), got {heads.EMBEDDING_DIM}"
            )
        self.pool_layer = build_pooling(heads.POOL_LAYER, p=heads.GEM_P)
        self.pool_norm = get_norm(heads.NORM, in_channels)
        self.reduction = reduction_layer(in_channels, dim)
        self.embedding_norm = get_norm(heads.NORM, dim)
        self.classifier = build_classifier(cfg, dim, heads.NUM_CLASSES)
        self.out_dim = dim

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        pooled = self.pool_norm(self.pool_layer(features))
        embedding = self.embedding_norm(self.reduction(pooled)).flatten(1)
        normalised = F.normalize(embedding, dim=1)
        if not self.training:
            return normalised
        outputs = {"features": embedding, "neck_features": normalised}
        outputs.update(self.classifier(normalised, targets))
        return outputs
