"""Prototypical N-tuplet loss: classification of each anchor among the batch's class prototypes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss, sim_scale_keys
from .build import LOSS_REGISTRY
from .prototypes import batch_prototypes
from .utils import (
    LogScale,
    ScaleLike,
    check_features_labels,
    check_scale,
    cosine_matrix,
    masked_logsumexp,
    masked_mean,
    rowwise_cosine,
)

CLASSES_PER_TUPLET = Key(
    0, "N classes per anchor (own + N - 1 drawn at random); 0 = all classes of the batch."
)

PN_CONFIG = ConfigBlock(
    "MODEL.LOSSES.PN",
    "PNTupletLoss: CE of each anchor over SIM_SCALE * cos(f_i, prototype_c), prototypes = batch "
    "class means.",
    {
        "CLASSES_PER_TUPLET": CLASSES_PER_TUPLET,
        "EXCLUDE_ANCHOR": Key(False, "Leave the anchor out of its own class prototype."),
        **sim_scale_keys(16.0, learn_scale=True),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
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
    mean of ``refs`` over class c.

    The mean over the anchors with a positive prototype, in batches with at least two classes.

    Args:
        f: B x D features (the anchors).
        y: B labels.
        refs: B x D' vectors whose class means are the prototypes (``f`` for PN, ``phi(f)`` for
            MPN); D' = D unless ``project`` maps them to D.
        n_classes: The anchor's class plus n - 1 other classes drawn uniformly per anchor; None =
            all classes of the batch (also when n is at least their number).
        scale: ``s``, a number or a learnable tensor.
        exclude_anchor: Leave the anchor out of its own prototype.
        generator: The RNG of the class draws (default: torch's global RNG).
        project: A linear map applied to the class means instead of to every reference (the same
            prototypes, since it commutes with averaging; MPN passes phi's last layer there).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> round(float(prototype_tuplet_loss(f, y, refs=f, scale=4.0)), 4)  # PN-tuplet
    0.0415
    """
    check_features_labels(f, y, "prototype_tuplet_loss")
    if (
        refs.dim() != 2
        or refs.shape[0] != f.shape[0]
        or (project is None and refs.shape[1] != f.shape[1])
    ):
        raise ValueError(
            f"prototype references must have the features' shape {tuple(f.shape)}, got "
            f"{tuple(refs.shape)}"
        )
    if n_classes is not None and n_classes < 2:
        raise ValueError(
            f"n_classes must be >= 2 or None (all classes of the batch), got {n_classes}"
        )
    check_scale(scale)
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
    """PN-tuplet: :func:`prototype_tuplet_loss` with prototypes = batch means of the features.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(pn_tuplet_loss(f, torch.tensor([0, 0, 1, 1]), scale=4.0)), 4)
    0.0415
    """
    return prototype_tuplet_loss(f, y, f, n_classes, scale, exclude_anchor, generator)


@LOSS_REGISTRY.register()
class PNTupletLoss(FeatureLoss):
    """PN-tuplet loss on ``outputs[feat_key]`` (see :func:`pn_tuplet_loss`); the class draws use
    torch's global RNG.

    Args:
        classes_per_tuplet: N classes per anchor (own + N - 1 drawn); 0 = all classes of the
            batch, else >= 2.
        exclude_anchor: Leave the anchor out of its own prototype.
        sim_scale: The multiplier ``s`` of the similarities.
        learn_scale: Learn ``s`` as a parameter ``log s``.
        feat_key: The outputs key of the features.
    """

    config_block = PN_CONFIG
    log_name = "loss_pn_tuplet"

    @configurable
    def __init__(
        self,
        classes_per_tuplet: int = 0,
        exclude_anchor: bool = False,
        sim_scale: float = 16.0,
        learn_scale: bool = True,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        n = int(classes_per_tuplet)
        if n == 1 or n < 0:
            raise InvalidArgument(
                "classes_per_tuplet", f"must be 0 (all classes of the batch) or >= 2, got {n}"
            )
        self.n_classes = n or None
        self.exclude_anchor = bool(exclude_anchor)
        self.scale = LogScale(float(sim_scale), bool(learn_scale), "sim_scale")

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return pn_tuplet_loss(
            self.features(outputs), targets, self.n_classes, self.scale(), self.exclude_anchor
        )

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes or 'all'}, exclude_anchor={self.exclude_anchor}"
