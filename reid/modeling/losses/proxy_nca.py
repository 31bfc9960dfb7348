"""Proxy-NCA: one learned proxy per class; the proxies are a parameter of the module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import (
    FEAT_DIM,
    FEAT_KEY,
    WEIGHT,
    FeatureLoss,
    feat_dim_of,
    num_classes_of,
    sim_scale_keys,
)
from .build import LOSS_REGISTRY
from .utils import (
    LogScale,
    ScaleLike,
    check_feature_dim,
    check_features_labels,
    check_label_range,
    check_positive,
    check_scale,
    cosine_matrix,
    masked_logsumexp,
)

PROXY_NCA_CONFIG = ConfigBlock(
    "MODEL.LOSSES.PROXY_NCA",
    "ProxyNCALoss: logits -SIM_SCALE * |f^ - p^_k|^2 over NUM_CLASSES learned proxies, then CE.",
    {
        "EXCLUDE_POSITIVE": Key(
            True,
            "Leave the own proxy out of the softmax denominator (the survey's and the original "
            "paper's form).",
        ),
        **sim_scale_keys(1.0, learn_scale=False),
        "FEAT_DIM": FEAT_DIM,
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
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

    Args:
        f: B x D features.
        y: B labels in [0, C).
        proxies: C x D proxies.
        scale: ``s``, a number or a learnable tensor.
        exclude_positive: Leave the own proxy out of the denominator (the survey's and the
            original paper's form, ``-log exp(-d_y) / sum_{k != y} exp(-d_k)``; it can be
            negative).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    >>> proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = torch.tensor([0, 1])
    >>> round(float(proxy_nca_loss(f, y, proxies)), 4)
    0.3459
    >>> round(float(proxy_nca_loss(f, y, proxies, exclude_positive=True)), 4)
    -1.0931
    """
    check_features_labels(f, y, "proxy_nca_loss")
    if proxies.dim() != 2 or proxies.shape[1] != f.shape[1]:
        raise ValueError(
            f"proxy_nca_loss: proxies must be C x {f.shape[1]}, got {tuple(proxies.shape)}"
        )
    check_label_range(y, proxies.shape[0], "proxy_nca_loss")
    check_scale(scale)
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
    """Proxy-NCA on ``outputs[feat_key]`` (see :func:`proxy_nca_loss`) with learned proxies
    (``num_classes`` x ``feat_dim``, initialised from torch's global RNG).

    Args:
        num_classes: The number of training identities (rows of the proxies).
        feat_dim: The dim of the features.
        exclude_positive: Leave the own proxy out of the denominator (needs 2 classes).
        sim_scale: The multiplier ``s``.
        learn_scale: Learn ``s`` as a parameter ``log s``.
        feat_key: The outputs key of the features.

    From a config, ``num_classes`` is MODEL.HEADS.NUM_CLASSES and ``feat_dim`` is FEAT_DIM if
    > 0, else the head's output dim (see :func:`~reid.modeling.losses.base.feat_dim_of`).
    """

    config_block = PROXY_NCA_CONFIG
    log_name = "loss_proxy_nca"
    identity_parameters = ("proxies",)  # one row per training identity

    @configurable
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        exclude_positive: bool = True,
        sim_scale: float = 1.0,
        learn_scale: bool = False,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        check_positive("num_classes", num_classes)
        check_positive("feat_dim", feat_dim)
        self.feat_dim = int(feat_dim)
        self.exclude_positive = bool(exclude_positive)
        if self.exclude_positive and num_classes < 2:
            raise InvalidArgument(
                "exclude_positive",
                f"needs at least 2 classes, got num_classes {num_classes} "
                "(MODEL.HEADS.NUM_CLASSES)",
            )
        self.scale = LogScale(float(sim_scale), bool(learn_scale), "sim_scale")
        self.proxies = nn.Parameter(torch.randn(int(num_classes), self.feat_dim))

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        args = cls.config_block.arguments(cfg, skip=("SCALE", "FEAT_DIM"))
        args.set("num_classes", num_classes_of(cfg, cls.__name__), "MODEL.HEADS.NUM_CLASSES")
        args["feat_dim"] = feat_dim_of(cfg, cls.config_block, cls.__name__, feat_dim)
        return args

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__)
        return proxy_nca_loss(f, targets, self.proxies, self.scale(), self.exclude_positive)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.proxies.shape[0]}, feat_dim={self.feat_dim}, "
            f"exclude_positive={self.exclude_positive}"
        )
