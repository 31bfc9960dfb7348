"""Point-to-set triplet loss: the reference nodes are the batch's class prototypes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from reid.config.schema import ConfigBlock, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss, sim_scale_keys
from .build import LOSS_REGISTRY
from .prototypes import batch_prototypes
from .utils import (
    LogScale,
    ScaleLike,
    check_choice,
    check_features_labels,
    check_scale,
    masked_mean,
    pairwise_distance,
    rowwise_cosine,
)

P2S_CONFIG = ConfigBlock(
    "MODEL.LOSSES.P2S",
    "P2STripletLoss: soft-margin triplet softplus(SIM_SCALE * (d_ap - d_an)) whose references are "
    "the batch's class prototypes (means).",
    {
        "DISTANCE": Key("cosine", '"cosine" (1 - cos) or "euclidean".'),
        "NEGATIVE": Key(
            "hardest", 'Negative prototype: "hardest" (closest other class) or "random".'
        ),
        "EXCLUDE_ANCHOR": Key(False, "Leave the anchor out of its own class prototype."),
        **sim_scale_keys(16.0, learn_scale=True),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)

P2S_DISTANCES = ("cosine", "euclidean")
P2S_NEGATIVES = ("hardest", "random")


def p2s_triplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    distance: str = "cosine",
    scale: ScaleLike = 1.0,
    negative: str = "hardest",
    exclude_anchor: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per anchor ``softplus(s (d(f_i, mu_{y_i}) - d(f_i, mu_n)))`` with ``mu_c`` the batch mean of
    class c; the mean over the anchors with a positive prototype and at least one other class.

    Args:
        f: B x D features.
        y: B labels.
        distance: ``cosine`` (1 - cos) or ``euclidean``.
        scale: ``s``, a number or a learnable tensor.
        negative: ``mu_n`` is the closest other prototype (``hardest``) or a uniformly drawn one
            (``random``).
        exclude_anchor: Leave the anchor out of its own prototype (anchors of singleton classes
            then have no positive).
        generator: The RNG of the random negatives (default: torch's global RNG).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(p2s_triplet_loss(f, torch.tensor([0, 0, 1, 1]), scale=4.0)), 4)
    0.0415
    """
    check_features_labels(f, y, "p2s_triplet_loss")
    check_choice("distance", distance, P2S_DISTANCES)
    check_choice("negative", negative, P2S_NEGATIVES)
    check_scale(scale)
    protos = batch_prototypes(f, y)
    dist = pairwise_distance(f, protos.means, distance)
    if exclude_anchor:
        own = protos.leave_one_out(f)
        if distance == "cosine":
            d_ap = 1.0 - rowwise_cosine(f, own)
        else:
            d_ap = (f - own).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()
        has_pos = protos.counts[protos.inverse] > 1
    else:
        d_ap = dist.gather(1, protos.inverse.unsqueeze(1)).squeeze(1)
        has_pos = torch.ones_like(y, dtype=torch.bool)
    if negative == "hardest":
        d_an = dist.masked_fill(protos.own, float("inf")).min(dim=1).values
    else:
        draw = torch.rand(dist.shape, generator=generator, device=dist.device, dtype=dist.dtype)
        pick = draw.masked_fill(protos.own, -1.0).argmax(dim=1, keepdim=True)
        d_an = dist.gather(1, pick).squeeze(1)
    valid = has_pos & (protos.counts.shape[0] > 1)
    zeros = torch.zeros_like(d_ap)
    d_ap, d_an = torch.where(valid, d_ap, zeros), torch.where(valid, d_an, zeros)
    return masked_mean(F.softplus(scale * (d_ap - d_an)), valid)


@LOSS_REGISTRY.register()
class P2STripletLoss(FeatureLoss):
    """Point-to-set triplet loss on ``outputs[feat_key]`` (see :func:`p2s_triplet_loss`); random
    negatives use torch's global RNG.

    Args:
        distance: "cosine" or "euclidean".
        negative: "hardest" or "random".
        exclude_anchor: Leave the anchor out of its own prototype.
        sim_scale: The multiplier ``s``.
        learn_scale: Learn ``s`` as a parameter ``log s``.
        feat_key: The outputs key of the features.
    """

    config_block = P2S_CONFIG
    log_name = "loss_p2s"

    @configurable
    def __init__(
        self,
        distance: str = "cosine",
        negative: str = "hardest",
        exclude_anchor: bool = False,
        sim_scale: float = 16.0,
        learn_scale: bool = True,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        self.distance = check_choice("distance", distance, P2S_DISTANCES)
        self.negative = check_choice("negative", negative, P2S_NEGATIVES)
        self.exclude_anchor = bool(exclude_anchor)
        self.scale = LogScale(float(sim_scale), bool(learn_scale), "sim_scale")

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return p2s_triplet_loss(
            self.features(outputs),
            targets,
            distance=self.distance,
            scale=self.scale(),
            negative=self.negative,
            exclude_anchor=self.exclude_anchor,
        )

    def extra_repr(self) -> str:
        return (
            f"distance={self.distance}, negative={self.negative}, "
            f"exclude_anchor={self.exclude_anchor}"
        )
