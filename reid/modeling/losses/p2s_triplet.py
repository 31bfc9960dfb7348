"""Point-to-set triplet loss: the reference nodes are the batch's class prototypes."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .prototypes import batch_prototypes
from .utils import (
    LogScale,
    ScaleLike,
    check_choice,
    check_features_labels,
    masked_mean,
    pairwise_distance,
    resolve_scale,
    rowwise_cosine,
)

P2S_CONFIG = ConfigBlock(
    "MODEL.LOSSES.P2S",
    (
        "P2STripletLoss: soft-margin triplet softplus(SIM_SCALE * (d_ap - d_an)) "
        "whose references are the batch's class prototypes (means)."
    ),
    {
        "DISTANCE": Key(
            "cosine",
            '"cosine" (1 - cos) or "euclidean".',
        ),
        "NEGATIVE": Key(
            "hardest",
            'Negative prototype: "hardest" (closest other class) or "random".',
        ),
        "EXCLUDE_ANCHOR": Key(
            False,
            "Leave the anchor out of its own class prototype.",
        ),
        "SIM_SCALE": Key(
            16.0,
            "Multiplier s of the similarities (temperature 1 / s).",
        ),
        "LEARN_SCALE": Key(
            True,
            "Learn s as a parameter log s, initialised from SIM_SCALE.",
        ),
        "FEAT_KEY": Key(
            "features",
            ("Key of the model's outputs dict that the loss reads its B x D features from."),
        ),
        "SCALE": Key(
            1.0,
            "Weight of this loss in the total loss.",
        ),
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
    class c; ``mu_n`` is the closest other prototype (``negative="hardest"``) or a uniformly drawn
    one (``"random"``, from ``generator`` if given, else the global RNG). ``exclude_anchor`` leaves
    the anchor out of its own prototype (anchors of singleton classes then have no positive).
    ``distance``: ``cosine`` = 1 - cos or ``euclidean``. Mean over anchors with a positive
    prototype and at least one other class.
    """
    check_features_labels(f, y, "p2s_triplet_loss")
    check_choice("distance", distance, P2S_DISTANCES)
    check_choice("negative", negative, P2S_NEGATIVES)
    resolve_scale(scale)
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
    """Point-to-set triplet loss on ``outputs[P2S.FEAT_KEY]``: DISTANCE, NEGATIVE, EXCLUDE_ANCHOR,
    SIM_SCALE / LEARN_SCALE. Random negatives use torch's global RNG."""

    cfg_key = "P2S"

    config_block = P2S_CONFIG
    log_name = "loss_p2s"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.distance = check_choice(self.key("DISTANCE"), block.DISTANCE, P2S_DISTANCES)
        self.negative = check_choice(self.key("NEGATIVE"), block.NEGATIVE, P2S_NEGATIVES)
        self.exclude_anchor = bool(block.EXCLUDE_ANCHOR)
        self.scale = LogScale(
            float(block.SIM_SCALE), bool(block.LEARN_SCALE), self.key("SIM_SCALE")
        )

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return p2s_triplet_loss(
            self.features(outputs),
            targets,
            distance=self.distance,
            scale=self.scale(),
            negative=self.negative,
            exclude_anchor=self.exclude_anchor,
        )

    def extra_repr(self) -> str:
        return f"distance={self.distance}, negative={self.negative}, exclude_anchor={self.exclude_anchor}"
