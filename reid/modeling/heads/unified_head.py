"""The unified-view paper's head (Zhang et al., MPN-tuplet): reduction + BN = the ReID feature x."""

from __future__ import annotations

import logging

import torch
from torch import nn

from reid.config.schema import configurable
from reid.modeling.layers import ClassifierFactory, get_norm
from reid.modeling.layers.classifiers import Linear

from .base import ReidHead, check_embedding_dim, reduction_layer
from .build import HEAD_REGISTRY

logger = logging.getLogger(__name__)

# The ReID feature size of the paper, used when the embedding dim is 0.
UNIFIED_HEAD_DIM = 1024


@HEAD_REGISTRY.register()
class UnifiedHead(ReidHead):
    """pool -> 1x1 reduction to ``embedding_dim`` -> BN = x -> classifier.

    The paper puts every sub-sampling loss (triplet, N-tuplet, PN/MPN-tuplet) and the classifier
    on x, so ``features`` and ``neck_features`` are both x and the losses' default FEAT_KEY reads
    it. Test feature: x (not normalised; the evaluator's metric decides).

    Args:
        in_channels: The channels of the backbone's feature map.
        num_classes: The number of training identities.
        pooling: The global pooling module; default global average pooling.
        embedding_dim: The size of x; 0 = the paper's 1024.
        norm: The norm after the reduction (see :func:`reid.modeling.layers.get_norm`).
        classifier: Builds the classifier from (feature dim, num_classes).
    """

    ignored_keys = {
        "WITH_BNNECK": "its BN after the reduction layer is part of the paper's structure",
        "NECK_FEAT": 'its "features" and "neck_features" are both the ReID feature x',
    }

    @configurable
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        pooling: nn.Module | None = None,
        embedding_dim: int = 0,
        norm: str = "BN",
        classifier: ClassifierFactory = Linear,
    ) -> None:
        dim = check_embedding_dim(embedding_dim, str(UNIFIED_HEAD_DIM)) or UNIFIED_HEAD_DIM
        super().__init__(in_channels, pooling)
        self.reduction = reduction_layer(in_channels, dim)
        self.embedding_norm = get_norm(norm, dim)
        self.classifier = classifier(dim, num_classes)
        self.out_dim = dim

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The training outputs dict, or in eval mode the test feature x.

        Args:
            features: The backbone's N x C x H x W feature map.
            targets: The identity labels (margin classifiers use them in training).
        """
        x = self.embedding_norm(self.reduction(self.pool_layer(features))).flatten(1)
        if not self.training:
            return x
        return self.training_outputs(x, x, targets)
