"""The bag-of-tricks embedding head (fastreid's EmbeddingHead)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from reid.config.schema import InvalidArgument, configurable
from reid.modeling.layers import ClassifierFactory, get_norm
from reid.modeling.layers.classifiers import Linear

from .base import ReidHead, check_embedding_dim, reduction_layer
from .build import HEAD_REGISTRY

logger = logging.getLogger(__name__)

NECK_FEATS = ("before", "after")


@HEAD_REGISTRY.register()
class EmbeddingHead(ReidHead):
    """pool -> [1x1 reduction to ``embedding_dim``] -> [BN neck, bias frozen] -> classifier.

    Training outputs: ``features`` (what metric losses read by default) is the pooled (and
    reduced) feature when ``neck_feat`` is "before", the neck's output when "after" (fastreid's
    meaning of MODEL.HEADS.NECK_FEAT); ``neck_features`` is always the neck's output, the
    classifier's input; the classifier adds ``logits`` and ``cls_weight``. Test feature (eval
    mode): the neck's output, as in the bag of tricks and fastreid (the pooled feature itself
    without a neck); not normalised (the evaluator's metric decides).

    Args:
        in_channels: The channels of the backbone's feature map.
        num_classes: The number of training identities.
        pooling: The global pooling module; default global average pooling.
        embedding_dim: The reduction layer's output size; 0 = no reduction layer.
        with_bnneck: Put a BN neck (norm with a frozen bias) before the classifier.
        neck_feat: "before" or "after": which feature the ``features`` output is.
        norm: The neck's norm (see :func:`reid.modeling.layers.get_norm`).
        classifier: Builds the classifier from (feature dim, num_classes), e.g.
            ``functools.partial(CosFace, scale=30.0, margin=0.35)``.
    """

    @configurable
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        pooling: nn.Module | None = None,
        embedding_dim: int = 0,
        with_bnneck: bool = True,
        neck_feat: str = "before",
        norm: str = "BN",
        classifier: ClassifierFactory = Linear,
    ) -> None:
        if neck_feat not in NECK_FEATS:
            raise InvalidArgument("neck_feat", f"must be 'before' or 'after', got {neck_feat!r}")
        embedding_dim = check_embedding_dim(embedding_dim, "no reduction layer")
        super().__init__(in_channels, pooling)
        self.neck_feat = neck_feat
        dim = in_channels
        self.reduction: nn.Module = nn.Identity()
        if embedding_dim > 0:
            self.reduction = reduction_layer(in_channels, embedding_dim)
            dim = embedding_dim
        self.bottleneck = get_norm(norm, dim, bias_freeze=True) if with_bnneck else nn.Identity()
        self.classifier = classifier(dim, num_classes)
        self.out_dim = dim

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The training outputs dict, or in eval mode the test feature (B x ``out_dim``).

        Args:
            features: The backbone's N x C x H x W feature map.
            targets: The identity labels (margin classifiers use them in training).
        """
        embedding = self.reduction(self.pool_layer(features))
        neck = self.bottleneck(embedding).flatten(1)
        if not self.training:
            return neck
        embedding = embedding.flatten(1)
        return self.training_outputs(
            embedding if self.neck_feat == "before" else neck, neck, targets
        )
