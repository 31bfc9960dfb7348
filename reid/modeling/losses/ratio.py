"""Circle-based ratio loss (Yang et al., 2020): max intra-class over min inter-class distance."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_choice,
    check_features_labels,
    check_label_range,
    class_index,
    cosine_matrix,
    read_output,
    rowwise_cosine,
)

RATIO_CONFIG = ConfigBlock(
    "MODEL.LOSSES.RATIO",
    (
        "RatioLoss (circle-based ratio loss): mean over the batch's classes j of "
        "max_{y_i = j} d(f^_i, w^_j) / (min_{k != j} d(w^_k, w^_j) + EPS), w = "
        'outputs["cls_weight"].'
    ),
    {
        "EPS": Key(
            0.5,
            ("The moderating term eps added to the inter-class distance (the paper: 0.5)."),
        ),
        "DISTANCE": Key(
            "cosine",
            (
                '"cosine" (1 - cos), "chord" (Euclidean distance on the unit sphere) or '
                '"angle" (acos).'
            ),
        ),
        "FEAT_KEY": Key(
            "neck_features",
            ("The classifier's input, since the loss compares features with the class weights."),
        ),
        "SCALE": Key(
            1.0,
            "Weight of this loss in the total loss.",
        ),
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
    """For each class j of the batch ``d_j = max_{y_i = j} dist(f^_i, W^_j)`` and
    ``D_j = min_{k != j} dist(W^_k, W^_j)`` over all C classes; ``mean_j d_j / (D_j + eps)``.

    ``distance``: ``cosine`` = 1 - cos, ``chord`` = sqrt(max(2 - 2cos, 1e-12)) (Euclidean on the
    sphere), ``angle`` = acos (cos clamped to [-1 + 1e-7, 1 - 1e-7] to keep the gradient finite).
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
    # Every distance decreases with the cosine: the nearest other class is the most similar one. Find
    # it without a graph over all C classes, then take the distance of that pair with its gradient.
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
    """Ratio loss on ``outputs[RATIO.FEAT_KEY]`` and the classifier weights ``outputs["cls_weight"]``:
    EPS, DISTANCE. FEAT_KEY defaults to ``neck_features``, the classifier's input, since the loss
    compares features with class weights."""

    cfg_key = "RATIO"

    config_block = RATIO_CONFIG
    log_name = "loss_ratio"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.eps = float(block.EPS)
        self.distance = check_choice(self.key("DISTANCE"), block.DISTANCE, RATIO_DISTANCES)
        if self.eps < 0:
            raise ValueError(f"{self.key('EPS')} must be >= 0, got {self.eps}")

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        weight = read_output(
            outputs, "cls_weight", type(self).__name__, "RATIO (classifier weights)"
        )
        return ratio_loss(self.features(outputs), targets, weight, self.eps, self.distance)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, distance={self.distance}"
