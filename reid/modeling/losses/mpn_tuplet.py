"""Meta prototypical N-tuplet loss: PN-tuplet whose prototypes are means of ``phi(f)``, with the
mapping subnet ``phi`` (the meta-learner) owned by the loss module and unused at test time."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .build import LOSS_REGISTRY
from .pn_tuplet import PNTupletLoss, prototype_tuplet_loss
from .utils import ScaleLike, check_feature_dim, resolve_feat_dim

MPN_CONFIG = ConfigBlock(
    "MODEL.LOSSES.MPN",
    (
        "MPNTupletLoss: as PN with prototypes = class means of phi(f), phi = "
        "Linear(D, D / REDUCTION) -> BatchNorm1d -> Linear(D / REDUCTION, D), owned "
        "by the loss module (unused at test time)."
    ),
    {
        "CLASSES_PER_TUPLET": Key(
            0,
            ("N classes per anchor (own + N - 1 drawn at random); 0 = all classes of the batch."),
        ),
        "EXCLUDE_ANCHOR": Key(
            False,
            ("Leave the anchor out of its own class prototype (the paper includes it)."),
        ),
        "REDUCTION": Key(
            8,
            "phi's hidden size is D / REDUCTION (the paper: 8).",
        ),
        "FEAT_DIM": Key(
            0,
            (
                "Dimension of the features the loss's parameters are built for; 0 = the "
                "head's output dim."
            ),
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


def build_phi(dim: int, reduction: int = 8) -> nn.Sequential:
    """``phi(x) = W2(BN(W1 x))``, W1: D -> D / reduction, W2: D / reduction -> D, no activation."""
    if reduction < 1 or dim % reduction:
        raise ValueError(
            f"the MPN mapping needs a feature dim divisible by its reduction, got dim {dim}, reduction {reduction}"
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
    """MPN-tuplet: logits ``s cos(f_i, mean_{y_j = c} phi(f_j))``; see :func:`prototype_tuplet_loss`.

    When ``phi`` ends with a bias-free linear layer (as :func:`build_phi` does), the class means
    are taken before that layer, which maps P means instead of B samples (same prototypes).
    """
    last = phi[-1] if isinstance(phi, nn.Sequential) and len(phi) > 1 else None
    if isinstance(last, nn.Linear) and last.bias is None:
        return prototype_tuplet_loss(
            f, y, phi[:-1](f), n_classes, scale, exclude_anchor, generator, project=last
        )
    return prototype_tuplet_loss(f, y, phi(f), n_classes, scale, exclude_anchor, generator)


@LOSS_REGISTRY.register()
class MPNTupletLoss(PNTupletLoss):
    """MPN-tuplet loss on ``outputs[MPN.FEAT_KEY]``; ``phi`` maps FEAT_DIM-d features (0 = the
    head's output dim) through FEAT_DIM / REDUCTION. CLASSES_PER_TUPLET, EXCLUDE_ANCHOR,
    SIM_SCALE / LEARN_SCALE as for PN."""

    cfg_key = "MPN"

    config_block = MPN_CONFIG
    log_name = "loss_mpn_tuplet"

    uses_feat_dim = True

    def __init__(self, cfg: CfgNode, feat_dim: int | None = None) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.feat_dim = resolve_feat_dim(cfg, self.cfg_key, type(self).__name__, feat_dim)
        reduction = int(block.REDUCTION)
        if reduction < 1 or self.feat_dim % reduction:
            raise ValueError(
                f"{self.key('REDUCTION')} ({reduction}) must be a positive divisor of the feature dim {self.feat_dim} "
                f"({self.key('FEAT_DIM')}, 0 = the head's output dim)"
            )
        self.phi = build_phi(self.feat_dim, reduction)

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        f = self.features(outputs)
        check_feature_dim(f, self.feat_dim, type(self).__name__, self.cfg_key)
        return mpn_tuplet_loss(
            f, targets, self.phi, self.n_classes, self.scale(), self.exclude_anchor
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feat_dim={self.feat_dim}"
