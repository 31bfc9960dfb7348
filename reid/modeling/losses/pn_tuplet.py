"""Prototypical N-tuplet loss: classification of each anchor among the batch's class prototypes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .prototypes import batch_prototypes
from .utils import (
    LogScale,
    ScaleLike,
    check_features_labels,
    cosine_matrix,
    masked_logsumexp,
    masked_mean,
    resolve_scale,
    rowwise_cosine,
)

PN_CONFIG = ConfigBlock(
    "MODEL.LOSSES.PN",
    (
        "PNTupletLoss: CE of each anchor over SIM_SCALE * cos(f_i, prototype_c), "
        "prototypes = batch class means."
    ),
    {
        "CLASSES_PER_TUPLET": Key(
            0,
            ("N classes per anchor (own + N - 1 drawn at random); 0 = all classes of the batch."),
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


def prototype_tuplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    refs: torch.Tensor,
    n_classes: int | None = None,
    scale: ScaleLike = 16.0,
    exclude_anchor: bool = False,
    generator: torch.Generator | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cross-entropy of each anchor ``f_i`` over the logits ``s cos(f_i, mu_c)``, ``mu_c`` the batch
    mean of ``refs`` over class c (``refs = f`` for PN, ``phi(f)`` for MPN). ``project``, a linear
    map, is applied to the class means instead of to every reference (the same prototypes, since
    it commutes with averaging; MPN passes phi's last layer there).

    ``n_classes``: the anchor's class plus n - 1 other classes drawn uniformly per anchor (from
    ``generator`` if given, else the global RNG); None = all classes of the batch (also when n is
    at least their number). ``exclude_anchor`` leaves the anchor out of its own prototype. Mean
    over anchors with a positive prototype, in batches with at least two classes.
    """
    check_features_labels(f, y, "prototype_tuplet_loss")
    if (
        refs.dim() != 2
        or refs.shape[0] != f.shape[0]
        or (project is None and refs.shape[1] != f.shape[1])
    ):
        raise ValueError(
            f"prototype references must have the features' shape {tuple(f.shape)}, got {tuple(refs.shape)}"
        )
    if n_classes is not None and n_classes < 2:
        raise ValueError(
            f"n_classes must be >= 2 or None (all classes of the batch), got {n_classes}"
        )
    resolve_scale(scale)
    protos = batch_prototypes(refs, y)
    num_p = protos.counts.shape[0]
    means = protos.means if project is None else project(protos.means)
    logits = scale * cosine_matrix(f, means)
    if exclude_anchor:
        own = protos.leave_one_out(refs)
        own_cos = rowwise_cosine(f, own if project is None else project(own)).unsqueeze(1)
        logits = torch.where(protos.own, scale * own_cos, logits)
        has_pos = protos.counts[protos.inverse] > 1
    else:
        has_pos = torch.ones_like(y, dtype=torch.bool)
    if n_classes is not None and n_classes < num_p:
        draw = torch.rand(logits.shape, generator=generator, device=logits.device)
        picked = draw.masked_fill(protos.own, -1.0).topk(n_classes - 1, dim=1).indices
        keep = protos.own.scatter(1, picked, True)
    else:
        keep = torch.ones_like(protos.own)
    own_logit = logits.masked_select(protos.own)
    per_anchor = masked_logsumexp(logits, keep, dim=1) - own_logit
    return masked_mean(per_anchor, has_pos & (num_p > 1))


def pn_tuplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    n_classes: int | None = None,
    scale: ScaleLike = 16.0,
    exclude_anchor: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PN-tuplet: :func:`prototype_tuplet_loss` with prototypes = batch means of the features."""
    return prototype_tuplet_loss(f, y, f, n_classes, scale, exclude_anchor, generator)


@LOSS_REGISTRY.register()
class PNTupletLoss(FeatureLoss):
    """PN-tuplet loss on ``outputs[PN.FEAT_KEY]``: CLASSES_PER_TUPLET (0 = all classes of the
    batch), EXCLUDE_ANCHOR, SIM_SCALE / LEARN_SCALE. Class draws use torch's global RNG."""

    cfg_key = "PN"

    config_block = PN_CONFIG
    log_name = "loss_pn_tuplet"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        n = int(block.CLASSES_PER_TUPLET)
        if n == 1 or n < 0:
            raise ValueError(
                f"{self.key('CLASSES_PER_TUPLET')} must be 0 (all classes of the batch) or >= 2, got {n}"
            )
        self.n_classes = n or None
        self.exclude_anchor = bool(block.EXCLUDE_ANCHOR)
        self.scale = LogScale(
            float(block.SIM_SCALE), bool(block.LEARN_SCALE), self.key("SIM_SCALE")
        )

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return pn_tuplet_loss(
            self.features(outputs), targets, self.n_classes, self.scale(), self.exclude_anchor
        )

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes or 'all'}, exclude_anchor={self.exclude_anchor}"
