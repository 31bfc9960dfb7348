"""The head registry, the keys the heads share, and ``build_heads``."""

from __future__ import annotations

import logging

from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

logger = logging.getLogger(__name__)

HEADS_CONFIG = declare(
    ConfigBlock(
        "MODEL.HEADS",
        "The head on the backbone's feature map (its pooling and classifier have own blocks).",
        {
            "NAME": Key(
                "EmbeddingHead",
                (
                    'Registered head: "EmbeddingHead" (BN-neck head), "RatioHead" (ratio-loss '
                    'paper: GAP-BN-FC-BN-L2), "UnifiedHead" (unified-view paper: reduction + BN).'
                ),
            ),
            "NORM": Key("BN", 'Norm layer of the heads: "BN", "syncBN", "FrozenBN", "GN".'),
            "NUM_CLASSES": Key(
                0, "Number of training identities; 0 = set from the training set at build time."
            ),
            "EMBEDDING_DIM": Key(
                0,
                (
                    "Output size of the reduction layer after pooling; 0 = no reduction layer in "
                    "EmbeddingHead, the papers' 1024 in RatioHead and UnifiedHead."
                ),
            ),
            "WITH_BNNECK": Key(
                False,
                (
                    "EmbeddingHead: a BN neck (BatchNorm with a frozen bias) between the features "
                    "and the classifier."
                ),
            ),
            "NECK_FEAT": Key(
                "before",
                (
                    'EmbeddingHead, fastreid\'s meaning: the training output "features" (what '
                    'metric losses read by default) is the pooled feature "before" the BN neck or '
                    'the neck\'s output "after" it. "neck_features" and the test feature are '
                    "always the neck's output."
                ),
            ),
        },
    )
)

HEAD_REGISTRY = Registry("HEAD")
HEAD_REGISTRY.__doc__ = """Heads, named by MODEL.HEADS.NAME, built as ``cls(cfg, in_channels)``.

``forward(feature_map, targets=None)``: in training mode a dict with at least ``features``,
``neck_features``, ``logits`` and ``cls_weight`` (:class:`reid.structures.OutputKeys`); in eval
mode the test feature (B x D). Attribute ``out_dim``: the size of ``features`` (what losses with
per-dimension parameters are built for).
"""


def build_heads(cfg: CfgNode, in_channels: int | None = None) -> nn.Module:
    """The head MODEL.HEADS.NAME, built from the config.

    Args:
        cfg: The whole config.
        in_channels: The channels of the backbone's feature map; default MODEL.BACKBONE.FEAT_DIM.

    Returns:
        The head, with ``out_dim``.

    Raises:
        ConfigError: No ``in_channels`` and MODEL.BACKBONE.FEAT_DIM is not set.
        RegistryKeyError: The name is not registered (the message names the key).
    """
    if in_channels is None:
        in_channels = int(cfg.MODEL.BACKBONE.FEAT_DIM)
        if in_channels <= 0:
            raise ConfigError(
                f"the head needs the channel count of the backbone's feature map: pass "
                f"in_channels or set MODEL.BACKBONE.FEAT_DIM (got {in_channels})"
            )
    name = HEADS_CONFIG.value(cfg, "NAME")
    try:
        cls = HEAD_REGISTRY.get(name)
    except RegistryKeyError as e:
        raise RegistryKeyError(f"{HEADS_CONFIG.full_key('NAME')}: {e}") from None
    head = cls(cfg, in_channels)
    if not isinstance(getattr(head, "out_dim", None), int):
        raise TypeError(
            f"head '{name}' ({type(head).__name__}) must expose an int attribute 'out_dim' "
            f"(the size of its features)"
        )
    return head
