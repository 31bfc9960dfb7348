"""Meta N-tuplet loss (unified view, Eq. 9): the N-tuplet loss whose reference nodes are the
sampled instances mapped by the meta-learner ``phi`` (no prototypes; Eq. 10, the prototype form,
is :mod:`~reid.modeling.losses.mpn_tuplet`).

Per tuplet (anchor a, positive p, negatives n_1 .. n_{N-1} of N - 1 distinct other classes):
``-log softmax`` of ``s cos(f_a, phi(f_p))`` among ``s cos(f_a, phi(f_j))``, j = p, n_1, ...; the
anchor itself is never mapped. Tuplets are drawn exactly as the N-tuplet loss draws them
(:func:`~reid.modeling.losses.ntuplet.sample_tuplets`: uniform over all tuplets of the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_DIM, FEAT_KEY, WEIGHT, feat_dim_of, sim_scale_keys
from .build import LOSS_REGISTRY
from .mpn_tuplet import build_phi
from .ntuplet import NTupletLoss, resolve_tuplets, tuplet_softmax_loss
from .utils import (
    ScaleLike,
    check_feature_dim,
    check_features_labels,
    check_positive,
    check_scale,
    zero_loss,
)

META_NTUPLET_CONFIG = ConfigBlock(
    "MODEL.LOSSES.META_NTUPLET",
    "MetaNTupletLoss (unified view, Eq. 9): -log softmax of the positive among N scaled cosine "
    "similarities s cos(f_a, phi(f_j)), the positive's and N - 1 negatives' of distinct classes, "
    "over tuplets drawn uniformly per batch; phi = Linear(D, D / REDUCTION) -> BatchNorm1d -> "
    "Linear(D / REDUCTION, D), owned by the loss module (unused at test time).",
    {
        "CLASSES_PER_TUPLET": Key(
            16, "N, the classes of a tuplet (>= 2; capped at the number of classes in the batch)."
        ),
        "NUM_TUPLETS": Key(
            0, "Tuplets per batch; 0 = the batch's number of triplets (11,520 for P = 16, K = 4)."
        ),
        "REDUCTION": Key(8, "phi's hidden size is D / REDUCTION (the paper: 8)."),
        "FEAT_DIM": FEAT_DIM,
        **sim_scale_keys(16.0, learn_scale=True),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


def meta_ntuplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    phi: Callable[[torch.Tensor], torch.Tensor],
    n_classes: int = 16,
    num_tuplets: int | None = None,
    scale: ScaleLike = 16.0,
    tuplets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean over tuplets of ``-log softmax`` of the positive among the n logits
    ``s cos(f_a, phi(f_p)), s cos(f_a, phi(f_n1)), ...`` (Eq. 9 of the unified-view paper).

    ``phi`` maps the whole batch once (so a BatchNorm inside it sees the batch's statistics in
    training mode); with ``phi`` the identity this is :func:`~reid.modeling.losses.ntuplet_loss`.

    Args:
        f: B x D features.
        y: B labels.
        phi: The meta-learner, B x D -> B x D (e.g. :func:`~reid.modeling.losses.build_phi`).
        n_classes: n, when the tuplets are drawn.
        num_tuplets: The tuplets drawn (default: the batch's number of triplets).
        scale: ``s``, a number or a learnable tensor.
        tuplets: T x (n + 1) batch indices (anchor, positive, negatives) used as given instead of
            drawing them.
        generator: The RNG of the draw (default: torch's global RNG).

    Returns:
        The 0-dim loss (zero, with a graph to ``f``, when the batch has no tuplet).

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> tuplets = torch.tensor([[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, 1]])
    >>> swap = lambda x: x.flip(1)  # phi mapping (u, v) to (v, u)
    >>> round(float(meta_ntuplet_loss(f, y, swap, scale=4.0, tuplets=tuplets)), 4)
    2.995
    >>> round(float(meta_ntuplet_loss(f, y, lambda x: x, scale=4.0, tuplets=tuplets)), 4)
    0.04
    """
    check_features_labels(f, y, "meta_ntuplet_loss")
    check_scale(scale)
    tuplets = resolve_tuplets(y, n_classes, num_tuplets, tuplets, generator)
    if tuplets.shape[0] == 0:
        return zero_loss(f)
    refs = phi(f)
    if refs.shape != f.shape:
        raise ValueError(
            f"meta_ntuplet_loss: phi must map the B x D features to B x D reference nodes, got "
            f"{tuple(f.shape)} -> {tuple(refs.shape)}"
        )
    return tuplet_softmax_loss(f, refs, tuplets, scale)


@LOSS_REGISTRY.register()
class MetaNTupletLoss(NTupletLoss):
    """Meta N-tuplet loss on ``outputs[feat_key]`` (see :func:`meta_ntuplet_loss`) with its own
    mapping ``phi`` (:func:`~reid.modeling.losses.build_phi`); the tuplets are drawn with torch's
    global RNG.

    Args:
        feat_dim: The dim D of the features ``phi`` maps.
        classes_per_tuplet: N (>= 2), capped at the number of classes in the batch.
        num_tuplets: Tuplets per batch; 0 = the batch's number of triplets.
        reduction: ``phi``'s hidden size is ``feat_dim / reduction``.
        sim_scale: The multiplier ``s``.
        learn_scale: Learn ``s`` as a parameter ``log s``.
        feat_key: The outputs key of the features.

    From a config, ``feat_dim`` is FEAT_DIM if > 0, else the head's output dim (see
    :func:`~reid.modeling.losses.base.feat_dim_of`).
    """

    config_block = META_NTUPLET_CONFIG
    log_name = "loss_meta_ntuplet"

    @configurable
    def __init__(
        self,
        feat_dim: int,
        classes_per_tuplet: int = 16,
        num_tuplets: int = 0,
        reduction: int = 8,
        sim_scale: float = 16.0,
        learn_scale: bool = True,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(classes_per_tuplet, num_tuplets, sim_scale, learn_scale, feat_key)
        check_positive("feat_dim", feat_dim)
        self.phi = build_phi(int(feat_dim), int(reduction))
        self.feat_dim = int(feat_dim)

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        args = cls.config_block.arguments(cfg, skip=("SCALE", "FEAT_DIM"))
        args["feat_dim"] = feat_dim_of(cfg, cls.config_block, cls.__name__, feat_dim)
        return args

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__)
        return meta_ntuplet_loss(
            f,
            targets,
            self.phi,
            n_classes=self.n_classes,
            num_tuplets=self.num_tuplets or None,
            scale=self.scale(),
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feat_dim={self.feat_dim}"
