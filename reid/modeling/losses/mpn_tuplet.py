"""Meta prototypical N-tuplet loss: PN-tuplet whose prototypes are means of ``phi(f)``, with the
mapping subnet ``phi`` (the meta-learner) owned by the loss module and unused at test time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_DIM, FEAT_KEY, WEIGHT, feat_dim_of, sim_scale_keys
from .build import LOSS_REGISTRY
from .pn_tuplet import CLASSES_PER_TUPLET, PNTupletLoss, prototype_tuplet_loss
from .utils import ScaleLike, check_feature_dim, check_positive

MPN_CONFIG = ConfigBlock(
    "MODEL.LOSSES.MPN",
    "MPNTupletLoss: as PN with prototypes = class means of phi(f), phi = Linear(D, D / REDUCTION) "
    "-> BatchNorm1d -> Linear(D / REDUCTION, D), owned by the loss module (unused at test time).",
    {
        "CLASSES_PER_TUPLET": CLASSES_PER_TUPLET,
        "EXCLUDE_ANCHOR": Key(
            False, "Leave the anchor out of its own class prototype (the paper includes it)."
        ),
        "REDUCTION": Key(8, "phi's hidden size is D / REDUCTION (the paper: 8)."),
        "FEAT_DIM": FEAT_DIM,
        **sim_scale_keys(16.0, learn_scale=True),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


def build_phi(dim: int, reduction: int = 8) -> nn.Sequential:
    """MPN's mapping ``phi(x) = W2(BN(W1 x))``, W1: D -> D / reduction, W2: D / reduction -> D,
    bias-free, no activation.

    Args:
        dim: The feature dim D.
        reduction: D / the hidden size; must divide D.

    Raises:
        InvalidArgument: ``reduction`` is not a positive divisor of ``dim``.

    >>> [type(layer).__name__ for layer in build_phi(16, 4)]
    ['Linear', 'BatchNorm1d', 'Linear']
    >>> build_phi(16, 4)[0]
    Linear(in_features=16, out_features=4, bias=False)
    """
    if reduction < 1 or dim % reduction:
        raise InvalidArgument(
            "reduction", f"({reduction}) must be a positive divisor of the feature dim {dim}"
        )
    hidden = dim // reduction
    return nn.Sequential(
        nn.Linear(dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.Linear(hidden, dim, bias=False),
    )


def mpn_tuplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    phi: nn.Module,
    n_classes: int | None = None,
    scale: ScaleLike = 16.0,
    exclude_anchor: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MPN-tuplet: logits ``s cos(f_i, mean_{y_j = c} phi(f_j))``; see
    :func:`~reid.modeling.losses.pn_tuplet.prototype_tuplet_loss` for the arguments.

    When ``phi`` ends with a bias-free linear layer (as :func:`build_phi` does), the class means
    are taken before that layer, which maps P means instead of B samples (same prototypes).

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> phi = nn.Linear(2, 2, bias=False)
    >>> _ = phi.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    >>> round(mpn_tuplet_loss(f, torch.tensor([0, 0, 1, 1]), phi, scale=4.0).item(), 4)
    0.0787
    """
    if isinstance(phi, nn.Sequential) and len(phi) > 1:
        last = phi[-1]
        if isinstance(last, nn.Linear) and last.bias is None:
            return prototype_tuplet_loss(
                f, y, phi[:-1](f), n_classes, scale, exclude_anchor, generator, project=last
            )
    return prototype_tuplet_loss(f, y, phi(f), n_classes, scale, exclude_anchor, generator)


@LOSS_REGISTRY.register()
class MPNTupletLoss(PNTupletLoss):
    """MPN-tuplet loss on ``outputs[feat_key]`` (see :func:`mpn_tuplet_loss`) with its own
    mapping ``phi`` (:func:`build_phi`); the class draws use torch's global RNG.

    Args:
        feat_dim: The dim D of the features ``phi`` maps.
        classes_per_tuplet: N classes per anchor (own + N - 1 drawn); 0 = all classes of the
            batch, else >= 2.
        exclude_anchor: Leave the anchor out of its own prototype.
        reduction: ``phi``'s hidden size is ``feat_dim / reduction``.
        sim_scale: The multiplier ``s`` of the similarities.
        learn_scale: Learn ``s`` as a parameter ``log s``.
        feat_key: The outputs key of the features.

    From a config, ``feat_dim`` is FEAT_DIM if > 0, else the head's output dim (see
    :func:`~reid.modeling.losses.base.feat_dim_of`).
    """

    config_block = MPN_CONFIG
    log_name = "loss_mpn_tuplet"

    @configurable
    def __init__(
        self,
        feat_dim: int,
        classes_per_tuplet: int = 0,
        exclude_anchor: bool = False,
        reduction: int = 8,
        sim_scale: float = 16.0,
        learn_scale: bool = True,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(classes_per_tuplet, exclude_anchor, sim_scale, learn_scale, feat_key)
        check_positive("feat_dim", feat_dim)
        self.feat_dim = int(feat_dim)
        self.phi = build_phi(self.feat_dim, int(reduction))

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        args = cls.config_block.arguments(cfg, skip=("SCALE", "FEAT_DIM"))
        args["feat_dim"] = feat_dim_of(cfg, cls.config_block, cls.__name__, feat_dim)
        return args

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__)
        return mpn_tuplet_loss(
            f, targets, self.phi, self.n_classes, self.scale(), self.exclude_anchor
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feat_dim={self.feat_dim}"
