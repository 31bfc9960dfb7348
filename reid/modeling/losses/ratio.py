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
    "RatioLoss (circle-based ratio loss): the sum over the batch's classes j of max_{y_i = j} "
    'd(f^_i, w^_j) / (min_{k != j} d(w^_k, w^_j) + EPS), w = outputs["cls_weight"], divided as '
    "AVERAGE_OVER says.",
    {
        "EPS": Key(
            0.5, "The moderating term eps added to the inter-class distance (the paper: 0.5)."
        ),
        "DISTANCE": Key(
            "cosine",
            '"cosine" (1 - cos), "chord" (Euclidean distance on the unit sphere) or "angle" '
            "(acos).",
        ),
        "AVERAGE_OVER": Key(
            "batch_classes",
            '(open) The normalisation of the sum over the batch\'s classes j: "batch_classes" '
            '(divide by their number, the mean over the classes present) or "all_classes" (divide '
            "by the number C of training classes, Eq. 3's 1/C; classes absent from the batch add "
            "no term). With P = 16 identities per batch, all_classes is smaller by C / 16 (47 on "
            "Market-1501).",
        ),
        "FEAT_KEY": Key(
            OutputKeys.NECK_FEATURES,
            "The classifier's input, since the loss compares features with the class weights.",
        ),
        "SCALE": WEIGHT,
    },
)


RATIO_DISTANCES = ("cosine", "chord", "angle")
RATIO_AVERAGES = ("batch_classes", "all_classes")


def _cos_to_distance(cos: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "cosine":
        return 1.0 - cos
    if distance == "chord":
        return (2.0 - 2.0 * cos).clamp_min(1e-12).sqrt()
    return torch.acos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7))


def ratio_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    eps: float = 0.5,
    distance: str = "cosine",
    average_over: str = "batch_classes",
) -> torch.Tensor:
    """``sum_j d_j / (D_j + eps)`` over the classes j of the batch, divided by their number (or by
    C), with ``d_j = max_{y_i = j} dist(f^_i, W^_j)`` and ``D_j = min_{k != j} dist(W^_k, W^_j)``
    over all C classes.

    Args:
        f: B x D features.
        y: B labels in [0, C).
        W: C x D class weights (C >= 2).
        eps: The moderating term (>= 0).
        distance: ``cosine`` = 1 - cos, ``chord`` = sqrt(max(2 - 2cos, 1e-12)) (Euclidean on the
            sphere) or ``angle`` = acos (cos clamped to [-1 + 1e-7, 1 - 1e-7] to keep the gradient
            finite).
        average_over: ``batch_classes`` (the mean over the classes of the batch) or
            ``all_classes`` (the sum divided by C, the ``1/C`` of the paper's Eq. 3).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> round(float(ratio_loss(f, torch.tensor([0, 0, 1]), W)), 4)
    0.1333
    >>> round(float(ratio_loss(f, torch.tensor([0, 0, 1]), W, average_over="all_classes")), 4)
    0.0889
    """
    check_features_labels(f, y, "ratio_loss")
    check_choice("distance", distance, RATIO_DISTANCES)
    check_choice("average_over", average_over, RATIO_AVERAGES)
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
    ratios = d_intra / (d_inter + eps)
    if average_over == "all_classes":
        return ratios.sum() / W.shape[0]
    return ratios.mean()


@LOSS_REGISTRY.register()
class RatioLoss(FeatureLoss):
    """Ratio loss (see :func:`ratio_loss`) on ``outputs[feat_key]`` and the classifier weights
    ``outputs["cls_weight"]``.

    Args:
        eps: The moderating term; must be >= 0.
        distance: "cosine", "chord" or "angle".
        average_over: "batch_classes" (the mean over the classes of the batch) or "all_classes"
            (divided by the number of training classes, Eq. 3's 1/C).
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
        average_over: str = "batch_classes",
        feat_key: str = OutputKeys.NECK_FEATURES,
    ) -> None:
        super().__init__(feat_key)
        if eps < 0:
            raise InvalidArgument("eps", f"must be >= 0, got {eps}")
        self.eps = float(eps)
        self.distance = check_choice("distance", distance, RATIO_DISTANCES)
        self.average_over = check_choice("average_over", average_over, RATIO_AVERAGES)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        weight = self.read(outputs, OutputKeys.CLS_WEIGHT)
        return ratio_loss(
            self.features(outputs), targets, weight, self.eps, self.distance, self.average_over
        )

    def extra_repr(self) -> str:
        return f"eps={self.eps}, distance={self.distance}, average_over={self.average_over}"
