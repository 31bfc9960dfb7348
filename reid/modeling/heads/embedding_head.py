"""The bag-of-tricks embedding head (fastreid's EmbeddingHead): pooling, optional reduction, BN neck, classifier."""

from __future__ import annotations

import torch
from torch import nn
from yacs.config import CfgNode

from reid.modeling.layers import build_pooling, get_norm
from reid.modeling.layers.classifiers import build_classifier

from .build import HEAD_REGISTRY


def reduction_layer(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A bias-free 1x1 convolution (a linear map on N x C x 1 x 1 pooled features), Kaiming-initialised."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


@HEAD_REGISTRY.register()
class EmbeddingHead(nn.Module):
    """pool -> [1x1 reduction to EMBEDDING_DIM] -> [BN neck, bias frozen] -> classifier.

    fastreid's meaning of MODEL.HEADS.NECK_FEAT: it picks the training output ``features`` (what
    metric losses read by default): the pooled (and reduced) feature "before" the neck, or the
    neck's output "after" it. ``neck_features`` is always the neck's output (the classifier's
    input), and the classifier adds ``logits``, ``pred_logits``, ``cls_weight``. Test feature (eval
    mode): the neck's output, as in the bag of tricks and fastreid (the pooled feature itself when
    WITH_BNNECK is off); not normalised (the evaluator's metric decides).
    """

    def __init__(self, cfg: CfgNode, in_channels: int) -> None:
        super().__init__()
        heads = cfg.MODEL.HEADS
        if heads.NECK_FEAT not in ("before", "after"):
            raise ValueError(
                f"MODEL.HEADS.NECK_FEAT must be 'before' or 'after', got {heads.NECK_FEAT!r}"
            )
        if heads.EMBEDDING_DIM < 0:
            raise ValueError(
                f"MODEL.HEADS.EMBEDDING_DIM must be >= 0 (0 = no reduction layer), got {heads.EMBEDDING_DIM}"
            )
        self.neck_feat = heads.NECK_FEAT
        self.pool_layer = build_pooling(heads.POOL_LAYER, p=heads.GEM_P)
        dim = in_channels
        self.reduction: nn.Module = nn.Identity()
        if heads.EMBEDDING_DIM > 0:
            self.reduction = reduction_layer(in_channels, heads.EMBEDDING_DIM)
            dim = heads.EMBEDDING_DIM
        self.bottleneck = (
            get_norm(heads.NORM, dim, bias_freeze=True) if heads.WITH_BNNECK else nn.Identity()
        )
        self.classifier = build_classifier(cfg, dim, heads.NUM_CLASSES)
        self.out_dim = dim

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        embedding = self.reduction(self.pool_layer(features))
        neck = self.bottleneck(embedding).flatten(1)
        embedding = embedding.flatten(1)
        if not self.training:
            return neck
        outputs = {
            "features": embedding if self.neck_feat == "before" else neck,
            "neck_features": neck,
        }
        outputs.update(self.classifier(neck, targets))
        return outputs
