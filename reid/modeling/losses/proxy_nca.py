"""Proxy-NCA: one learned proxy per class; the proxies are a parameter of the module."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    LogScale,
    ScaleLike,
    check_feature_dim,
    check_features_labels,
    check_label_range,
    cosine_matrix,
    masked_logsumexp,
    require_num_classes,
    resolve_feat_dim,
    resolve_scale,
)

PROXY_NCA_CONFIG = ConfigBlock(
    "MODEL.LOSSES.PROXY_NCA",
    ("ProxyNCALoss: logits -SIM_SCALE * |f^ - p^_k|^2 over NUM_CLASSES learned proxies, then CE."),
    {
        "EXCLUDE_POSITIVE": Key(
            True,
            (
                "Leave the own proxy out of the softmax denominator (the survey's and the "
                "original paper's form)."
            ),
        ),
        "SIM_SCALE": Key(
            1.0,
            "Multiplier s of the similarities (temperature 1 / s).",
        ),
        "LEARN_SCALE": Key(
            False,
            "Learn s as a parameter log s, initialised from SIM_SCALE.",
        ),
        "FEAT_DIM": Key(
            0,
            (
                "Dimension of the features the loss's parameters are built for; 0 = the "
                "head's output dim."
            ),
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


def proxy_nca_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    proxies: torch.Tensor,
    scale: ScaleLike = 1.0,
    exclude_positive: bool = False,
) -> torch.Tensor:
    """Logits ``-s |f^ - p^_k|^2`` (= -s (2 - 2cos)) over all C proxies, then cross-entropy.

    ``exclude_positive``: the own proxy is left out of the denominator (the survey's and the
    original paper's form, ``-log exp(-d_y) / sum_{k != y} exp(-d_k)``; it can be negative).
    """
    check_features_labels(f, y, "proxy_nca_loss")
    if proxies.dim() != 2 or proxies.shape[1] != f.shape[1]:
        raise ValueError(
            f"proxy_nca_loss: proxies must be C x {f.shape[1]}, got {tuple(proxies.shape)}"
        )
    check_label_range(y, proxies.shape[0], "proxy_nca_loss")
    resolve_scale(scale)
    logits = -scale * (2.0 - 2.0 * cosine_matrix(f, proxies))
    if not exclude_positive:
        return F.cross_entropy(logits, y)
    if proxies.shape[0] < 2:
        raise ValueError("proxy_nca_loss: exclude_positive needs at least 2 proxies")
    own = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, y.unsqueeze(1), True)
    target = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    return (masked_logsumexp(logits, ~own, dim=1) - target).mean()


@LOSS_REGISTRY.register()
class ProxyNCALoss(FeatureLoss):
    """Proxy-NCA on ``outputs[PROXY_NCA.FEAT_KEY]`` with MODEL.HEADS.NUM_CLASSES proxies of dim
    PROXY_NCA.FEAT_DIM (0 = the head's output dim); SIM_SCALE / LEARN_SCALE, EXCLUDE_POSITIVE."""

    cfg_key = "PROXY_NCA"

    config_block = PROXY_NCA_CONFIG
    log_name = "loss_proxy_nca"

    uses_feat_dim = True

    def __init__(self, cfg: CfgNode, feat_dim: int | None = None) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        num_classes = require_num_classes(cfg, type(self).__name__)
        self.feat_dim = resolve_feat_dim(cfg, self.cfg_key, type(self).__name__, feat_dim)
        self.exclude_positive = bool(block.EXCLUDE_POSITIVE)
        if self.exclude_positive and num_classes < 2:
            raise ValueError(
                f"{self.key('EXCLUDE_POSITIVE')} needs at least 2 classes, MODEL.HEADS.NUM_CLASSES is {num_classes}"
            )
        self.scale = LogScale(
            float(block.SIM_SCALE), bool(block.LEARN_SCALE), self.key("SIM_SCALE")
        )
        self.proxies = nn.Parameter(torch.randn(num_classes, self.feat_dim))

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__, self.cfg_key)
        return proxy_nca_loss(f, targets, self.proxies, self.scale(), self.exclude_positive)

    def extra_repr(self) -> str:
        return f"num_classes={self.proxies.shape[0]}, feat_dim={self.feat_dim}, exclude_positive={self.exclude_positive}"
