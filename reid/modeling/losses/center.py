"""Center loss; the centers are a parameter of the module with their own optimiser group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_DIM, FEAT_KEY, FeatureLoss, feat_dim_of, num_classes_of
from .build import LOSS_REGISTRY
from .utils import check_feature_dim, check_features_labels, check_label_range, check_positive

CENTER_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CENTER",
    "CenterLoss: mean_i |f_i - c_{y_i}|^2 with NUM_CLASSES learned centers (in the loss module).",
    {
        "FEAT_DIM": FEAT_DIM,
        "LR": Key(
            3.5e-4,
            "Absolute LR of the centers' own optimiser group (SOLVER.OPT, no weight decay). The "
            "centers' gradient includes the weight SCALE; bag of tricks' separate SGD at 0.5 on "
            'the unweighted loss corresponds to SOLVER.OPT "SGD" with LR 0.5 / SCALE.',
        ),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": Key(0.0005, "Weight of this loss in the total loss (bag of tricks: 0.0005)."),
    },
)


def center_loss(f: torch.Tensor, y: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``mean_i |f_i - c_{y_i}|^2``, without the 1/2 (the bag-of-tricks convention its weight
    0.0005 was tuned for).

    Args:
        f: B x D features.
        y: B labels in [0, C).
        centers: C x D class centers.

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> centers = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    >>> round(float(center_loss(f, torch.tensor([0, 1, 1]), centers)), 4)
    1.0
    """
    check_features_labels(f, y, "center_loss")
    if centers.dim() != 2 or centers.shape[1] != f.shape[1]:
        raise ValueError(
            f"center_loss: centers must be C x {f.shape[1]}, got {tuple(centers.shape)}"
        )
    check_label_range(y, centers.shape[0], "center_loss")
    return (f - centers[y]).pow(2).sum(dim=1).mean()


@LOSS_REGISTRY.register()
class CenterLoss(FeatureLoss):
    """Center loss on ``outputs[feat_key]`` (see :func:`center_loss`) with learned centers.

    The centers (``num_classes`` x ``feat_dim``, initialised from torch's global RNG) form their
    own optimiser group (``lr``, no weight decay) through :meth:`param_groups`, which
    ``build_optimizer`` collects.

    Args:
        num_classes: The number of training identities (rows of the centers).
        feat_dim: The dim of the features.
        lr: The absolute learning rate of the centers.
        feat_key: The outputs key of the features.

    From a config, ``num_classes`` is MODEL.HEADS.NUM_CLASSES and ``feat_dim`` is FEAT_DIM if
    > 0, else the head's output dim (see :func:`~reid.modeling.losses.base.feat_dim_of`).
    """

    config_block = CENTER_CONFIG
    log_name = "loss_center"
    identity_parameters = ("centers",)  # one row per training identity

    @configurable
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        lr: float = 3.5e-4,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        check_positive("num_classes", num_classes)
        check_positive("feat_dim", feat_dim)
        self.feat_dim = int(feat_dim)
        self.lr = check_positive("lr", lr)
        self.centers = nn.Parameter(torch.randn(int(num_classes), self.feat_dim))

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        args = cls.config_block.arguments(cfg, skip=("SCALE", "FEAT_DIM"))
        args.set("num_classes", num_classes_of(cfg, cls.__name__), "MODEL.HEADS.NUM_CLASSES")
        args["feat_dim"] = feat_dim_of(cfg, cls.config_block, cls.__name__, feat_dim)
        return args

    def param_groups(self) -> list[dict[str, Any]]:
        """The centers' optimiser group: their own LR, no weight decay."""
        return [{"params": [self.centers], "lr": self.lr, "weight_decay": 0.0}]

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__)
        return center_loss(f, targets, self.centers)

    def extra_repr(self) -> str:
        return f"num_classes={self.centers.shape[0]}, feat_dim={self.feat_dim}, lr={self.lr}"
