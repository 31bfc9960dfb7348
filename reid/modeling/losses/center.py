"""Center loss; the centers are a parameter of the module with their own optimiser group."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_feature_dim,
    check_features_labels,
    check_label_range,
    require_num_classes,
    resolve_feat_dim,
)

CENTER_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CENTER",
    ("CenterLoss: mean_i |f_i - c_{y_i}|^2 with NUM_CLASSES learned centers (in the loss module)."),
    {
        "FEAT_DIM": Key(
            0,
            (
                "Dimension of the features the loss's parameters are built for; 0 = the "
                "head's output dim."
            ),
        ),
        "LR": Key(
            3.5e-4,
            (
                "Absolute LR of the centers' own optimiser group (SOLVER.OPT, no weight "
                "decay). The centers' gradient includes the weight SCALE; bag of tricks' "
                'separate SGD at 0.5 on the unweighted loss corresponds to SOLVER.OPT "SGD" '
                "with LR 0.5 / SCALE."
            ),
        ),
        "FEAT_KEY": Key(
            "features",
            ("Key of the model's outputs dict that the loss reads its B x D features from."),
        ),
        "SCALE": Key(
            0.0005,
            "Bag-of-tricks weight.",
        ),
    },
)


def center_loss(f: torch.Tensor, y: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``mean_i |f_i - c_{y_i}|^2`` (no 1/2: the bag-of-tricks convention its weight 0.0005 was tuned for)."""
    check_features_labels(f, y, "center_loss")
    if centers.dim() != 2 or centers.shape[1] != f.shape[1]:
        raise ValueError(
            f"center_loss: centers must be C x {f.shape[1]}, got {tuple(centers.shape)}"
        )
    check_label_range(y, centers.shape[0], "center_loss")
    return (f - centers[y]).pow(2).sum(dim=1).mean()


@LOSS_REGISTRY.register()
class CenterLoss(FeatureLoss):
    """Center loss on ``outputs[CENTER.FEAT_KEY]`` with MODEL.HEADS.NUM_CLASSES centers of dim
    CENTER.FEAT_DIM (0 = the head's output dim: MODEL.HEADS.EMBEDDING_DIM if > 0, else
    MODEL.BACKBONE.FEAT_DIM). The centers form their own optimiser group (LR = CENTER.LR, no weight
    decay) through :meth:`param_groups`, which ``build_optimizer`` collects.
    """

    cfg_key = "CENTER"

    config_block = CENTER_CONFIG
    log_name = "loss_center"

    uses_feat_dim = True

    def __init__(self, cfg: CfgNode, feat_dim: int | None = None) -> None:
        super().__init__(cfg)
        num_classes = require_num_classes(cfg, type(self).__name__)
        self.feat_dim = resolve_feat_dim(cfg, self.cfg_key, type(self).__name__, feat_dim)
        self.lr = float(self.block(cfg).LR)
        if not self.lr > 0:
            raise ValueError(f"{self.key('LR')} must be positive, got {self.lr}")
        self.centers = nn.Parameter(torch.randn(num_classes, self.feat_dim))

    def param_groups(self) -> list[dict]:
        return [{"params": [self.centers], "lr": self.lr, "weight_decay": 0.0}]

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__, self.cfg_key)
        return center_loss(f, targets, self.centers)

    def extra_repr(self) -> str:
        return f"num_classes={self.centers.shape[0]}, feat_dim={self.feat_dim}, lr={self.lr}"
