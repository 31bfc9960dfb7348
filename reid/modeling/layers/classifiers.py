"""Classifier layers of the heads, selected by MODEL.HEADS.CLS_LAYER.

A classifier maps B x D features to a dict of ``logits`` (the CE input: times the scale ``s``,
with the margin ``m`` on the true class when targets are given in training) and ``cls_weight``
(the C x D weight parameter itself, which losses such as the ratio loss read).

Registered: ``Linear`` (plain, no margin), ``NSL`` (normalised softmax: ``s cos``), ``CosFace``
(LMCL), ``ArcFace`` and ``Circle`` (class-level circle); fastreid's names ``CosSoftmax``,
``ArcSoftmax`` and ``CircleSoftmax`` are aliases. The cosine classifiers can learn ``log s``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable
from reid.modeling.losses.margin_logits import (
    ARCFACE_FALLBACKS,
    arcface_margin,
    circle_margin,
    cosface_margin,
    cosine_logits,
)
from reid.modeling.losses.utils import LogScale, check_positive
from reid.structures import OutputKeys
from reid.utils.registry import Registry, RegistryKeyError

logger = logging.getLogger(__name__)

CLASSIFIER_CONFIG = ConfigBlock(
    "MODEL.HEADS",
    "The heads' classifier layer: linear, or cosine with a margin.",
    {
        "CLS_LAYER": Key(
            "Linear",
            (
                'Registered classifier: "Linear", "NSL" (cosine), "CosFace", "ArcFace", "Circle" '
                '(fastreid\'s "CosSoftmax", "ArcSoftmax", "CircleSoftmax" are accepted).'
            ),
        ),
        "SCALE": Key(1.0, "Scale s of the logits: s * w.x (Linear) or s * cos (cosine layers)."),
        "MARGIN": Key(0.0, "Margin m of CosFace, ArcFace (an angle) and Circle; 0 for the others."),
        "LEARN_SCALE": Key(
            False,
            (
                "Cosine classifiers: learn the scale as a parameter log s, initialised from "
                "SCALE (NormFace style). Not valid with Linear."
            ),
        ),
        "LINEAR_INIT_STD": Key(
            0.01,
            (
                "Standard deviation of the normal initialisation of the Linear classifier's "
                "weight: 0.01 as fastreid's EmbeddingHead, 0.001 in reid's Base files (the bag of "
                "tricks authors' code). The cosine classifiers start from 0.01."
            ),
        ),
    },
)

CLASSIFIER_REGISTRY = Registry("CLASSIFIER")
CLASSIFIER_REGISTRY.__doc__ = """Classifier layers, named by MODEL.HEADS.CLS_LAYER.

Built as ``cls(in_dim, num_classes, scale=..., margin=..., learn_scale=...)``, or from a config
as ``cls(cfg, in_dim, num_classes)``.
"""

# What a head is given to build its classifier: (in_dim, num_classes) -> the classifier module;
# a registered class, a functools.partial of one, or build_classifier bound to a config.
ClassifierFactory = Callable[[int, int], nn.Module]


class Classifier(nn.Module):
    """Base of the classifier layers: the C x D weight, initialised N(0, ``weight_std``).

    Every registered layer takes ``(in_dim, num_classes, scale, margin, learn_scale)``; its
    ``from_config`` reads the last three from MODEL.HEADS.

    Args:
        in_dim: The dimension D of the features.
        num_classes: The number of classes C (training identities); must be positive.
        weight_std: The standard deviation of the weight's initialisation.
    """

    config_block = CLASSIFIER_CONFIG
    # One row per training identity: re-initialised when weights of another identity set load.
    identity_parameters: ClassVar[tuple[str, ...]] = ("weight",)

    def __init__(self, in_dim: int, num_classes: int, weight_std: float = 0.01) -> None:
        super().__init__()
        if num_classes <= 0:
            raise InvalidArgument(
                "num_classes",
                f"must be positive to build a classifier, got {num_classes} (the trainer sets "
                f"MODEL.HEADS.NUM_CLASSES from the training set when it builds the model)",
            )
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.normal_(self.weight, std=weight_std)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int, num_classes: int) -> ConfigArgs:
        """``scale``, ``margin`` and ``learn_scale`` from MODEL.HEADS.

        Args:
            cfg: The whole config.
            in_dim: The dimension of the features.
            num_classes: The number of classes.
        """
        args = CLASSIFIER_CONFIG.arguments(cfg, skip=("CLS_LAYER", "LINEAR_INIT_STD"))
        return args.set("in_dim", in_dim).set("num_classes", num_classes)

    def outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The classifier's outputs: ``logits`` and ``cls_weight`` (the weight itself)."""
        return {OutputKeys.LOGITS: logits, OutputKeys.CLS_WEIGHT: self.weight}

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}"


@CLASSIFIER_REGISTRY.register()
class Linear(Classifier):
    """Linear classifier without bias (the bag-of-tricks head): ``s * w.x``.

    Args:
        in_dim: The dimension of the features.
        num_classes: The number of classes.
        scale: The scale s of the logits.
        margin: Must be 0 (no margin).
        learn_scale: Must be False.
        init_std: The standard deviation of the weight's normal initialisation (fastreid's 0.01;
            the bag of tricks authors' code uses 0.001).
    """

    @configurable
    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        scale: float = 1.0,
        margin: float = 0.0,
        learn_scale: bool = False,
        init_std: float = 0.01,
    ) -> None:
        if margin != 0.0:
            raise InvalidArgument(
                "margin", f"is {margin}, but the Linear classifier has no margin; set it to 0.0"
            )
        if learn_scale:
            raise InvalidArgument(
                "learn_scale",
                "applies to the cosine classifiers (NSL, CosFace, ArcFace, Circle), not Linear",
            )
        super().__init__(in_dim, num_classes, check_positive("init_std", init_std))
        self.scale = scale

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int, num_classes: int) -> ConfigArgs:
        """The base's arguments and ``init_std`` from MODEL.HEADS.LINEAR_INIT_STD.

        Args:
            cfg: The whole config.
            in_dim: The dimension of the features.
            num_classes: The number of classes.
        """
        args = super().from_config(cfg, in_dim, num_classes)
        key = CLASSIFIER_CONFIG.full_key("LINEAR_INIT_STD")
        return args.set("init_std", CLASSIFIER_CONFIG.value(cfg, "LINEAR_INIT_STD"), key)

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits ``s * w.x`` (``targets`` are not used) and the weight."""
        return self.outputs(F.linear(features, self.weight) * self.scale)


class CosineClassifier(Classifier):
    """Base of the normalised classifiers: ``s cos`` between features and class weights.

    A subclass with a ``margin_fn`` applies the margin to the true class in training mode when
    targets are given; evaluation logits are always ``s cos``.

    Args:
        in_dim: The dimension of the features.
        num_classes: The number of classes.
        scale: The scale s (its initial value when learned); must be positive.
        margin: The margin m; must be 0 for a layer without one (NSL).
        learn_scale: Learn s as a parameter ``log s``.
    """

    margin_fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None

    @configurable
    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        scale: float = 1.0,
        margin: float = 0.0,
        learn_scale: bool = False,
    ) -> None:
        if type(self).margin_fn is None and margin != 0.0:
            raise InvalidArgument(
                "margin", f"is {margin}, but {type(self).__name__} has no margin; set it to 0.0"
            )
        super().__init__(in_dim, num_classes)
        self.logit_scale = LogScale(scale, learn_scale, "scale")
        self.margin = float(margin)

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits ``s cos``, the margin applied in training mode when ``targets`` are given."""
        cos = cosine_logits(features, self.weight)
        margin_fn = type(self).margin_fn
        if self.training and targets is not None and margin_fn is not None:
            cos = margin_fn(cos, targets, self.margin)
        return self.outputs(cos * self.logit_scale())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"


@CLASSIFIER_REGISTRY.register()
class NSL(CosineClassifier):
    """Normalised softmax (cosine classifier): ``s cos``."""


@CLASSIFIER_REGISTRY.register()
class CosFace(CosineClassifier):
    """LMCL: ``s (cos - m)`` on the true class."""

    margin_fn = staticmethod(cosface_margin)


ARCFACE_CONFIG = ConfigBlock(
    "MODEL.HEADS.ARCFACE",
    "The ArcFace classifier (CLS_LAYER ArcFace / ArcSoftmax).",
    {
        "FALLBACK": Key(
            "insightface",
            '(open) The true-class logit where theta > pi - MARGIN: "insightface" = cos(theta) - '
            "m sin(m) (insightface's code, fastreid's ArcSoftmax) or \"plain\" = cos(theta + m) "
            "everywhere (the formula as written, e.g. by the survey).",
        ),
    },
)


@CLASSIFIER_REGISTRY.register(config_block=ARCFACE_CONFIG)
class ArcFace(CosineClassifier):
    """Additive angular margin: ``s cos(theta + m)`` on the true class, ``m`` in [0, pi);
    ``fallback`` ("insightface" or "plain") decides the logit where ``theta > pi - m`` (see
    :func:`~reid.modeling.losses.margin_logits.arcface_margin`)."""

    margin_fn = staticmethod(arcface_margin)

    @configurable
    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        scale: float = 1.0,
        margin: float = 0.0,
        learn_scale: bool = False,
        fallback: str = "insightface",
    ) -> None:
        super().__init__(in_dim, num_classes, scale, margin, learn_scale)
        if not 0.0 <= margin < math.pi:
            raise InvalidArgument("margin", f"of ArcFace is an angle in [0, pi), got {margin}")
        if fallback not in ARCFACE_FALLBACKS:
            raise InvalidArgument(
                "fallback", f"must be one of {list(ARCFACE_FALLBACKS)}, got {fallback!r}"
            )
        self.fallback = fallback

    @classmethod
    def from_config(cls, cfg: CfgNode, in_dim: int, num_classes: int) -> ConfigArgs:
        """MODEL.HEADS' keys (see :meth:`Classifier.from_config`) and MODEL.HEADS.ARCFACE's."""
        args = super().from_config(cfg, in_dim, num_classes)
        args.update_from(ARCFACE_CONFIG.arguments(cfg))
        return args

    def forward(
        self, features: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits ``s cos``, the margin (with this layer's fallback) applied in training mode when
        ``targets`` are given."""
        cos = cosine_logits(features, self.weight)
        if self.training and targets is not None:
            cos = arcface_margin(cos, targets, self.margin, self.fallback)
        return self.outputs(cos * self.logit_scale())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fallback={self.fallback}"


@CLASSIFIER_REGISTRY.register()
class Circle(CosineClassifier):
    """Class-level circle loss logits (fastreid's CircleSoftmax)."""

    margin_fn = staticmethod(circle_margin)


CLASSIFIER_REGISTRY.register(CosFace, name="CosSoftmax")
CLASSIFIER_REGISTRY.register(ArcFace, name="ArcSoftmax")
CLASSIFIER_REGISTRY.register(Circle, name="CircleSoftmax")


def build_classifier(cfg: CfgNode, in_dim: int, num_classes: int) -> nn.Module:
    """The classifier MODEL.HEADS.CLS_LAYER, with MODEL.HEADS.SCALE / MARGIN / LEARN_SCALE.

    Args:
        cfg: The whole config.
        in_dim: The dimension of the features.
        num_classes: The number of classes.

    Returns:
        The classifier module.

    Raises:
        RegistryKeyError: The name is not registered (the message names the key).
    """
    name = CLASSIFIER_CONFIG.value(cfg, "CLS_LAYER")
    try:
        cls = CLASSIFIER_REGISTRY.get(name)
    except RegistryKeyError as e:
        raise RegistryKeyError(f"{CLASSIFIER_CONFIG.full_key('CLS_LAYER')}: {e}") from None
    return cls(cfg, in_dim, num_classes)
