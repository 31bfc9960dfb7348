"""The ratio-loss paper's head (Yang et al. 2020): GAP -> BN -> FC -> BN -> L2 -> classifier."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from reid.config.schema import configurable
from reid.modeling.layers import ClassifierFactory, get_norm
from reid.modeling.layers.classifiers import Linear

from .base import ReidHead, check_embedding_dim, reduction_layer
from .build import HEAD_REGISTRY

logger = logging.getLogger(__name__)

# The feature size of the paper's FC layer, used when the embedding dim is 0.
RATIO_HEAD_DIM = 1024


@HEAD_REGISTRY.register()
class RatioHead(ReidHead):
    """pool (GAP in the paper) -> BN -> FC to ``embedding_dim`` -> BN -> L2 normalisation.

    The paper's classifier is NSL, the cosine classifier (MODEL.HEADS.CLS_LAYER "NSL"). Training
    outputs: ``features`` (the embedding before L2 normalisation), ``neck_features`` (the
    L2-normalised embedding, the classifier's input), ``logits``, ``cls_weight``. Test feature:
    the L2-normalised embedding. The FC layer has no bias: the BN after it would cancel one.

    Args:
        in_channels: The channels of the backbone's feature map.
        num_classes: The number of training identities.
        pooling: The global pooling module; default global average pooling.
        embedding_dim: The FC layer's output size; 0 = the paper's 1024.
        norm: The two norms (see :func:`reid.modeling.layers.get_norm`).
        classifier: Builds the classifier from (feature dim, num_classes).
    """

    ignored_keys = {
        "WITH_BNNECK": "its two BN layers are part of the paper's GAP-BN-FC-BN-L2 structure",
        "NECK_FEAT": (
            'its "features" are always the embedding before L2 normalisation and its '
            '"neck_features" the normalised embedding'
        ),
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
        dim = check_embedding_dim(embedding_dim, str(RATIO_HEAD_DIM)) or RATIO_HEAD_DIM
        super().__init__(in_channels, pooling)
        self.pool_norm = get_norm(norm, in_channels)
        self.reduction = reduction_layer(in_channels, dim)
        self.embedding_norm = get_norm(norm, dim)
        self.classifier = classifier(dim, num_classes)
        self.out_dim = dim

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The training outputs dict, or in eval mode the test feature (unit norm).

        Args:
            features: The backbone's N x C x H x W feature map.
            targets: The identity labels (margin classifiers use them in training).
        """
        pooled = self.pool_norm(self.pool_layer(features))
        embedding = self.embedding_norm(self.reduction(pooled)).flatten(1)
        normalised = F.normalize(embedding, dim=1)
        if not self.training:
            return normalised
        return self.training_outputs(embedding, normalised, targets)
