"""The head registry: MODEL.HEADS.NAME -> a head ``cls(cfg, in_channels)``."""

from __future__ import annotations

from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry

HEADS_CONFIG = declare(
    ConfigBlock(
        "MODEL.HEADS",
        "The head on the backbone's feature map.",
        {
            "NAME": Key(
                "EmbeddingHead",
                (
                    '"EmbeddingHead" (BN-neck head), "RatioHead" (ratio-loss paper: '
                    'GAP-BN-FC-BN-L2, cosine classifier), "UnifiedHead" (unified-view paper: '
                    "reduction + BN = the 1024-d ReID feature)."
                ),
            ),
            "NORM": Key(
                "BN",
                'Normalisation layer of the heads: "BN", "syncBN", "FrozenBN", "GN".',
            ),
            "NUM_CLASSES": Key(
                0,
                ("Number of training identities; 0 = taken from the training set at build time."),
            ),
            "EMBEDDING_DIM": Key(
                0,
                (
                    "Reduction layer output size after pooling; 0 = no reduction layer in "
                    "EmbeddingHead, the papers' 1024 in RatioHead and UnifiedHead."
                ),
            ),
            "WITH_BNNECK": Key(
                True,
                (
                    "BN neck of EmbeddingHead (BatchNorm with a frozen bias between the features "
                    "and the classifier)."
                ),
            ),
            "NECK_FEAT": Key(
                "before",
                (
                    'fastreid\'s meaning: the training output "features" (what metric losses read '
                    'by default) is the pooled feature "before" the BN neck or the neck\'s output '
                    '"after" it; "neck_features" is always the neck\'s output, and the test '
                    "feature is the neck's output."
                ),
            ),
            "POOL_LAYER": Key(
                "GlobalAvgPool",
                (
                    '"GlobalAvgPool", "GlobalMaxPool", "GeneralizedMeanPooling", '
                    '"GeneralizedMeanPoolingP", "AdaptiveAvgMaxPool".'
                ),
            ),
            "GEM_P": Key(
                3.0,
                "GeM power p (initial value when learnable).",
            ),
        },
    )
)


HEAD_REGISTRY = Registry("HEAD")
HEAD_REGISTRY.__doc__ = """Heads built as ``cls(cfg, in_channels)``.

``forward(feature_map, targets=None)``: in training mode a dict with at least ``features``,
``neck_features``, ``logits``, ``pred_logits`` and ``cls_weight``; in eval mode the test feature
(B x D). Attribute ``out_dim``: the size of ``features`` (what losses with per-dimension
parameters are built for).
"""


def build_heads(cfg: CfgNode, in_channels: int | None = None) -> nn.Module:
    """Build MODEL.HEADS.NAME for a feature map of ``in_channels`` channels (default MODEL.BACKBONE.FEAT_DIM)."""
    if in_channels is None:
        in_channels = cfg.MODEL.BACKBONE.FEAT_DIM
    if in_channels <= 0:
        raise ValueError(
            f"the head needs the channel count of the backbone's feature map: pass in_channels or set "
            f"MODEL.BACKBONE.FEAT_DIM (got {in_channels})"
        )
    return HEAD_REGISTRY.get(cfg.MODEL.HEADS.NAME)(cfg, in_channels)
