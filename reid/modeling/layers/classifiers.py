"""Classifier layers selected by MODEL.HEADS.CLS_LAYER.

Every classifier returns a dict: ``logits`` (the CE input: margin applied when targets are given in
training, times the scale), ``pred_logits`` (no margin, scaled) and ``cls_weight`` (the C x D
weight parameter itself, so losses such as the ratio loss can read it).

Registered: ``Linear`` (plain, no margin), ``NSL`` (normalised softmax: s cos), ``CosFace``
(LMCL), ``ArcFace`` and ``Circle`` (class-level circle); fastreid's names ``CosSoftmax``,
``ArcSoftmax`` and ``CircleSoftmax`` are aliases. MODEL.HEADS.SCALE is s, MODEL.HEADS.MARGIN is m;
with MODEL.HEADS.LEARN_SCALE the cosine classifiers learn ``log s`` (initialised from SCALE).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.modeling.losses.margin_logits import (
    arcface_margin,
    circle_margin,
    cosface_margin,
    cosine_logits,
)
from reid.modeling.losses.utils import LogScale
from reid.utils.registry import Registry, RegistryKeyError

CLASSIFIER_CONFIG = declare(
    ConfigBlock(
        "MODEL.HEADS",
        "The classifier layer of the heads (linear or cosine with a margin).",
        {
            "CLS_LAYER": Key(
                "Linear",
                (
                    'Classifier layer: "Linear", "NSL" (cosine), "CosFace", "ArcFace", "Circle" '
                    '(fastreid\'s "CosSoftmax", "ArcSoftmax", "CircleSoftmax" are accepted).'
                ),
            ),
            "SCALE": Key(
                1.0,
                (
                    "Scale s of the cosine classifiers' logits (s * cos); with the Linear "
                    "classifier it must stay 1."
                ),
            ),
            "MARGIN": Key(
                0.0,
                ("Margin m of CosFace, ArcFace and Circle classifiers; 0 for Linear and NSL."),
            ),
            "LEARN_SCALE": Key(
                False,
                (
                    "Cosine classifiers (NSL, CosFace, ArcFace, Circle): learn the scale s as a "
                    "parameter log s, initialised from MODEL.HEADS.SCALE (NormFace style). Not "
                    "valid with the Linear classifier."
                ),
            ),
        },
    )
)


CLASSIFIER_REGISTRY = Registry("CLASSIFIER")


@CLASSIFIER_REGISTRY.register()
class Linear(nn.Module):
    """Plain linear classifier without bias (the bag-of-tricks head), logits times SCALE."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        scale: float = 1.0,
        margin: float = 0.0,
        learn_scale: bool = False,
    ) -> None:
        super().__init__()
        if margin != 0.0:
            raise ValueError(
                f"MODEL.HEADS.MARGIN is {margin}, but the Linear classifier has no margin; set it to 0.0"
            )
        if learn_scale:
            raise ValueError(
                "MODEL.HEADS.LEARN_SCALE applies to the cosine classifiers (NSL, CosFace, ArcFace, Circle), not Linear"
            )
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.normal_(self.weight, std=0.001)
        self.scale = scale

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        logits = F.linear(features, self.weight) * self.scale
        return {"logits": logits, "pred_logits": logits, "cls_weight": self.weight}


class CosineClassifier(nn.Module):
    """Base of the normalised classifiers: cosines between features and class weights, an optional
    margin on the true class (training with targets only), times the (optionally learnable) scale."""

    margin_fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        scale: float = 1.0,
        margin: float = 0.0,
        learn_scale: bool = False,
    ) -> None:
        super().__init__()
        if type(self).margin_fn is None and margin != 0.0:
            raise ValueError(
                f"MODEL.HEADS.MARGIN is {margin}, but {type(self).__name__} has no margin; set it to 0.0"
            )
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.logit_scale = LogScale(scale, learn_scale, "MODEL.HEADS.SCALE")
        self.margin = float(margin)

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        cos = cosine_logits(features, self.weight)
        scale = self.logit_scale()
        pred_logits = cos * scale
        margin_fn = type(self).margin_fn
        if self.training and targets is not None and margin_fn is not None:
            logits = margin_fn(cos, targets, self.margin) * scale
        else:
            logits = pred_logits
        return {"logits": logits, "pred_logits": pred_logits, "cls_weight": self.weight}

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, margin={self.margin}"


@CLASSIFIER_REGISTRY.register()
class NSL(CosineClassifier):
    """Normalised softmax (cosine classifier): ``s cos``."""


@CLASSIFIER_REGISTRY.register()
class CosFace(CosineClassifier):
    """LMCL: ``s (cos - m)`` on the true class."""

    margin_fn = staticmethod(cosface_margin)


@CLASSIFIER_REGISTRY.register()
class ArcFace(CosineClassifier):
    """Additive angular margin: ``s cos(theta + m)`` on the true class."""

    margin_fn = staticmethod(arcface_margin)

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        scale: float = 1.0,
        margin: float = 0.0,
        learn_scale: bool = False,
    ) -> None:
        super().__init__(in_dim, num_classes, scale, margin, learn_scale)
        if not 0.0 <= margin < math.pi:
            raise ValueError(f"MODEL.HEADS.MARGIN of ArcFace is an angle in [0, pi), got {margin}")


@CLASSIFIER_REGISTRY.register()
class Circle(CosineClassifier):
    """Class-level circle loss logits (fastreid's CircleSoftmax)."""

    margin_fn = staticmethod(circle_margin)


CLASSIFIER_REGISTRY.register(CosFace, name="CosSoftmax")
CLASSIFIER_REGISTRY.register(ArcFace, name="ArcSoftmax")
CLASSIFIER_REGISTRY.register(Circle, name="CircleSoftmax")


def build_classifier(cfg: CfgNode, in_dim: int, num_classes: int) -> nn.Module:
    if num_classes <= 0:
        raise ValueError(
            f"MODEL.HEADS.NUM_CLASSES must be positive to build a classifier, got {num_classes} "
            f"(it is set from the training set when the trainer builds the model)"
        )
    heads = cfg.MODEL.HEADS
    try:
        cls = CLASSIFIER_REGISTRY.get(heads.CLS_LAYER)
    except RegistryKeyError as e:
        raise RegistryKeyError(f"MODEL.HEADS.CLS_LAYER: {e}") from None
    return cls(
        in_dim, num_classes, scale=heads.SCALE, margin=heads.MARGIN, learn_scale=heads.LEARN_SCALE
    )
