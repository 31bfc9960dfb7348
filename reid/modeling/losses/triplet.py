"""Triplet loss: batch-hard / all / weighted mining, hinge or soft margin, several distances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from reid.config.schema import (
    Alias,
    ConfigArgs,
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
)
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    DISTANCES,
    LogScale,
    ScaleLike,
    check_choice,
    check_features_labels,
    check_scale,
    masked_mean,
    masked_softmax,
    pairwise_distance,
    same_label_masks,
)

TRI_CONFIG = ConfigBlock(
    "MODEL.LOSSES.TRI",
    "TripletLoss.",
    {
        "MARGIN": Key(
            0.3, "Hinge margin m: [d_ap - d_an + m]_+. 0.0 = soft margin (fastreid meaning)."
        ),
        "MINING": Key(
            "weighted",
            '"weighted" (softmax-weighted positives and negatives), "batch_hard" (hardest '
            'positive / negative per anchor) or "all" (every triplet). fastreid\'s HARD_MINING '
            "is accepted as its spelling: True = batch_hard, False = weighted (fastreid's "
            "default).",
        ),
        "DISTANCE": Key("euclidean", '"euclidean", "sqeuclidean" or "cosine" (1 - cos).'),
        "NORMALIZE": Key(False, "L2-normalise the features before a (sq)euclidean distance."),
        "NORM_FEAT": Key(
            False,
            "fastreid meaning: distance 2 - 2cos on L2-normalised features (requires DISTANCE "
            '"euclidean").',
        ),
        "SOFT_MARGIN": Key(
            False, "Soft margin softplus(SIM_SCALE * (d_ap - d_an) + MARGIN) instead of the hinge."
        ),
        "SIM_SCALE": Key(1.0, "Scale of the soft margin (must stay 1.0 / False with the hinge)."),
        "LEARN_SCALE": Key(
            False, "Learn the soft margin's scale as a parameter log s, initialised from SIM_SCALE."
        ),
        "ANCHOR_AS_POSITIVE": Key(
            True,
            (
                "Count the anchor among its own positives (distance 0 to itself), as fastreid's "
                "triplet_loss does: it enters the weighted mining's softmax and the 'all' "
                "triplets, and gives an anchor without another positive d_ap = 0 instead of "
                "leaving it out. False = positives are the other images of the identity (reid's "
                "Base files)."
            ),
        ),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
    aliases={"HARD_MINING": Alias("MINING", {True: "batch_hard", False: "weighted"})},
)


MINING = ("batch_hard", "all", "weighted")


def _margin_term(
    d_ap: torch.Tensor, d_an: torch.Tensor, margin: float, soft_margin: bool, scale: ScaleLike
) -> torch.Tensor:
    if soft_margin:
        return F.softplus(scale * (d_ap - d_an) + margin)
    return F.relu(d_ap - d_an + margin)


def triplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    margin: float = 0.3,
    mining: str = "batch_hard",
    distance: str = "euclidean",
    normalize: bool = False,
    soft_margin: bool = False,
    scale: ScaleLike = 1.0,
    anchor_positive: bool = False,
) -> torch.Tensor:
    """Triplet loss over the batch; ``P(i)`` = other samples of y_i's class (and i itself with
    ``anchor_positive``), ``N(i)`` = the samples of other classes.

    Per triplet ``[d_ap - d_an + m]_+``, or ``softplus(scale (d_ap - d_an) + m)`` when
    ``soft_margin``.

    Args:
        f: B x D features.
        y: B labels.
        margin: ``m``.
        mining: ``batch_hard`` (hardest positive and negative, mean over the anchors having both),
            ``all`` (mean over every (a, p, n)) or ``weighted`` (d_ap and d_an averaged with
            weights softmax(d) over P(i) and softmax(-d) over N(i)).
        distance: ``euclidean``, ``sqeuclidean`` or ``cosine`` (1 - cos).
        normalize: L2-normalise the features first (fastreid's NORM_FEAT is ``sqeuclidean`` +
            ``normalize`` = 2 - 2cos).
        soft_margin: The softplus instead of the hinge.
        scale: The soft margin's scale; only applies there, and may be a learnable tensor.
        anchor_positive: Count each anchor among its positives, as fastreid does (its distance
            to itself is 0, or 1e-6 for ``euclidean``, whose squares are clamped at 1e-12).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> round(float(triplet_loss(f, y, margin=0.3)), 4)
    0.019
    >>> round(float(triplet_loss(f, y, margin=0.3, mining="all", distance="cosine")), 4)
    0.025
    >>> round(float(triplet_loss(f, y, margin=0.3, mining="all", anchor_positive=True)), 4)
    0.0048
    """
    check_features_labels(f, y, "triplet_loss")
    check_choice("mining", mining, MINING)
    check_choice("distance", distance, DISTANCES)
    check_scale(scale)
    if not soft_margin and (isinstance(scale, torch.Tensor) or scale != 1.0):
        raise ValueError(
            "triplet_loss: scale applies to the soft margin only; got a scale with "
            "soft_margin=False"
        )
    dist = pairwise_distance(f, f, distance, normalize)
    pos, neg = same_label_masks(y)
    if anchor_positive:
        pos = pos | torch.eye(y.shape[0], dtype=torch.bool, device=y.device)
    if mining == "all":
        # One row per (anchor, positive) pair against every sample, masked to the anchor's
        # negatives: |pairs| x B instead of B x B x B.
        anchor, positive = pos.nonzero(as_tuple=True)
        per_triplet = _margin_term(
            dist[anchor, positive].unsqueeze(1), dist[anchor], margin, soft_margin, scale
        )
        return masked_mean(per_triplet, neg[anchor])
    valid = pos.any(1) & neg.any(1)
    if mining == "batch_hard":
        d_ap = dist.masked_fill(~pos, float("-inf")).max(dim=1).values
        d_an = dist.masked_fill(~neg, float("inf")).min(dim=1).values
    else:
        d_ap = (masked_softmax(dist, pos, dim=1) * dist).sum(1)
        d_an = (masked_softmax(-dist, neg, dim=1) * dist).sum(1)
    zeros = torch.zeros_like(d_ap)
    d_ap, d_an = torch.where(valid, d_ap, zeros), torch.where(valid, d_an, zeros)
    return masked_mean(_margin_term(d_ap, d_an, margin, soft_margin, scale), valid)


@LOSS_REGISTRY.register()
class TripletLoss(FeatureLoss):
    """Triplet loss on ``outputs[feat_key]`` (see :func:`triplet_loss`).

    Args:
        margin: Hinge margin; with ``soft_margin`` the offset inside the softplus.
        mining: "batch_hard", "all" or "weighted".
        distance: "euclidean", "sqeuclidean" or "cosine".
        normalize: L2-normalise the features first.
        soft_margin: ``softplus(s (d_ap - d_an) + margin)`` instead of the hinge.
        sim_scale: The soft margin's scale ``s`` (1.0 with the hinge).
        learn_scale: Learn ``s`` as a parameter ``log s`` (soft margin only).
        anchor_as_positive: Count the anchor among its positives (fastreid's convention, the
            default here as in the config; the plain function's default is False).
        feat_key: The outputs key of the features.

    From a config, fastreid's keys keep their meaning: HARD_MINING True/False (an alias) = MINING
    batch_hard/weighted, NORM_FEAT True = distance 2 - 2cos on normalised features, MARGIN 0.0 =
    soft margin.
    """

    config_block = TRI_CONFIG
    log_name = "loss_triplet"
    needs_positives = True

    @configurable
    def __init__(
        self,
        margin: float = 0.3,
        mining: str = "batch_hard",
        distance: str = "euclidean",
        normalize: bool = False,
        soft_margin: bool = False,
        sim_scale: float = 1.0,
        learn_scale: bool = False,
        anchor_as_positive: bool = True,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        self.anchor_as_positive = bool(anchor_as_positive)
        self.margin = float(margin)
        self.mining = check_choice("mining", mining, MINING)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.normalize = bool(normalize)
        self.soft_margin = bool(soft_margin)
        if not self.soft_margin:
            turn_on = "turn the soft margin on (in a config: SOFT_MARGIN True or MARGIN 0.0)"
            if learn_scale:
                raise InvalidArgument(
                    "learn_scale",
                    f"learns the soft margin's scale only; {turn_on} or leave it False",
                )
            if sim_scale != 1.0:
                raise InvalidArgument(
                    "sim_scale",
                    f"scales the soft margin only; {turn_on} or leave it at 1.0, got {sim_scale}",
                )
        self.scale = LogScale(float(sim_scale), bool(learn_scale), "sim_scale")

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        block = cls.config_block.read(cfg)
        args = cls.config_block.arguments(cfg, skip=("SCALE", "NORM_FEAT"))
        args["soft_margin"] = bool(block.SOFT_MARGIN) or float(block.MARGIN) == 0.0
        if block.NORM_FEAT:
            if block.DISTANCE != "euclidean":
                raise ConfigError(
                    f"{cls.config_block.full_key('NORM_FEAT')} True means fastreid's distance "
                    f"2 - 2cos and conflicts with {cls.config_block.full_key('DISTANCE')} "
                    f"{block.DISTANCE!r}; leave DISTANCE at 'euclidean'"
                )
            args["distance"], args["normalize"] = "sqeuclidean", True
        return args

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return triplet_loss(
            self.features(outputs),
            targets,
            margin=self.margin,
            mining=self.mining,
            distance=self.distance,
            normalize=self.normalize,
            soft_margin=self.soft_margin,
            scale=self.scale(),
            anchor_positive=self.anchor_as_positive,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mining={self.mining}, distance={self.distance}, "
            f"normalize={self.normalize}, soft_margin={self.soft_margin}, "
            f"anchor_as_positive={self.anchor_as_positive}"
        )
