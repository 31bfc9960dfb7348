"""The head registry: MODEL.HEADS.NAME -> a head ``cls(cfg, in_channels)``."""

from __future__ import annotations

from torch import nn
from yacs.config import CfgNode

from reid.utils.registry import Registry

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
