"""Circle-based ratio loss (Yang et al., 2020): max intra-class over min inter-class distance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import WEIGHT, FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_choice,
    check_features_labels,
    check_label_range,
    class_index,
    cosine_matrix,
    rowwise_cosine,
)

RATIO_CONFIG = ConfigBlock(
    "MODEL.LOSSES.RATIO",
    "RatioLoss (circle-based ratio loss): mean over the batch's classes j of max_{y_i = j} "
    'd(f^_i, w^_j) / (min_{k != j} d(w^_k, w^_j) + EPS), w = outputs["cls_weight"].',
    {
        "EPS": Key(
            0.5, "The moderating term eps added to the inter-class distance (the paper: 0.5)."
        ),
        "DISTANCE": Key(
            "cosine",
            '"cosine" (1 - cos), "chord" (Euclidean distance on the unit sphere) or "angle" '
            "(acos).",
        ),
        "FEAT_KEY": Key(
            OutputKeys.NECK_FEATURES,
            "The classifier's input, since the loss compares features with the class weights.",
        ),
        "SCALE": WEIGHT,
    },
)


RATIO_DISTANCES = ("cosine", "chord", "angle")


def _cos_to_distance(cos: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "cosine":
        return 1.0 - cos
    if distance == "chord":
        return (2.0 - 2.0 * cos).clamp_min(1e-12).sqrt()
    return torch.acos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7))


def ratio_loss(
    f: torch.Tensor, y: torch.Tensor, W: torch.Tensor, eps: float = 0.5, distance: str = "cosine"
) -> torch.Tensor:
    """``mean_j d_j / (D_j + eps)`` over the classes j of the batch, with
    ``d_j = max_{y_i = j} dist(f^_i, W^_j)`` and ``D_j = min_{k != j} dist(W^_k, W^_j)`` over all C
    classes.

    Args:
        f: B x D features.
        y: B labels in [0, C).
        W: C x D class weights (C >= 2).
        eps: The moderating term (>= 0).
        distance: ``cosine`` = 1 - cos, ``chord`` = sqrt(max(2 - 2cos, 1e-12)) (Euclidean on the
            sphere) or ``angle`` = acos (cos clamped to [-1 + 1e-7, 1 - 1e-7] to keep the gradient
            finite).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(ratio_loss(f, torch.tensor([0, 0, 1]), W)), 4)
    0.1333
    """
    check_features_labels(f, y, "ratio_loss")
    check_choice("distance", distance, RATIO_DISTANCES)
    if W.dim() != 2 or W.shape[1] != f.shape[1]:
        raise ValueError(
            f"ratio_loss: class weights must be C x {f.shape[1]}, got {tuple(W.shape)}"
        )
    if W.shape[0] < 2:
        raise ValueError(
            "ratio_loss: needs at least 2 classes (D_j is a minimum over the other classes)"
        )
    if eps < 0:
        raise ValueError(f"ratio_loss: eps must be >= 0, got {eps}")
    check_label_range(y, W.shape[0], "ratio_loss")
    classes, inverse, _ = class_index(y)
    # Every distance decreases with the cosine: the nearest other class is the most similar one.
    # Find it without a graph over all C classes, then take the distance of that pair with its
    # gradient.
    with torch.no_grad():
        cos_weights = cosine_matrix(W[classes], W)
        cos_weights.scatter_(1, classes.unsqueeze(1), float("-inf"))
        nearest = cos_weights.argmax(dim=1)
    # One gather of every weight row the loss uses: its backward writes a single C x D gradient.
    rows = W.index_select(0, torch.cat([y, classes, nearest]))
    w_sample, w_class, w_nearest = rows.split([y.shape[0], classes.shape[0], classes.shape[0]])
    d_sample = _cos_to_distance(rowwise_cosine(f, w_sample), distance)
    d_intra = torch.zeros(classes.shape[0], dtype=d_sample.dtype, device=d_sample.device)
    d_intra = d_intra.scatter_reduce(0, inverse, d_sample, reduce="amax", include_self=False)
    d_inter = _cos_to_distance(rowwise_cosine(w_class, w_nearest), distance)
    return (d_intra / (d_inter + eps)).mean()


@LOSS_REGISTRY.register()
class RatioLoss(FeatureLoss):
    """Ratio loss (see :func:`ratio_loss`) on ``outputs[feat_key]`` and the classifier weights
    ``outputs["cls_weight"]``.

    Args:
        eps: The moderating term; must be >= 0.
        distance: "cosine", "chord" or "angle".
        feat_key: The outputs key of the features; by default the classifier's input, since the
            loss compares features with class weights.
    """

    config_block = RATIO_CONFIG
    log_name = "loss_ratio"

    @configurable
    def __init__(
        self,
        eps: float = 0.5,
        distance: str = "cosine",
        feat_key: str = OutputKeys.NECK_FEATURES,
    ) -> None:
        super().__init__(feat_key)
        if eps < 0:
            raise InvalidArgument("eps", f"must be >= 0, got {eps}")
        self.eps = float(eps)
        self.distance = check_choice("distance", distance, RATIO_DISTANCES)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        weight = self.read(outputs, OutputKeys.CLS_WEIGHT)
        return ratio_loss(self.features(outputs), targets, weight, self.eps, self.distance)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, distance={self.distance}"
