"""Sparse pairwise losses (AdaSP paper): SP-H, SP-LH and AdaSP, one term per class of the batch."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_choice,
    check_features_labels,
    class_members,
    cosine_matrix,
    masked_logsumexp,
    masked_mean,
)

SP_CONFIG = ConfigBlock(
    "MODEL.LOSSES.SP",
    ("SparsePairwiseLoss (alias AdaSPLoss; the AdaSP fork's block ADASP is read as SP)."),
    {
        "TEMP": Key(
            0.04,
            ("Temperature T of the cosine similarities (0.04 person, 0.05 vehicle ReID)."),
        ),
        "TYPE": Key(
            "adasp",
            (
                '"sp-h" (hardest positive pair), "sp-lh" (least-hard positive) or "adasp" '
                "(adaptive mix)."
            ),
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


SP_KINDS = ("sp-h", "sp-lh", "adasp")


def sparse_pairwise_loss(
    f: torch.Tensor, y: torch.Tensor, temperature: float = 0.04, kind: str = "adasp"
) -> torch.Tensor:
    """``mean_c softplus(log N_c - log X_c)`` with s = 1 / T, S the cosine similarities, I_c the
    samples of class c:

    - ``log P_c = -LSE_{i, j in I_c}(-s S_ij)`` (self pairs included): the soft hardest positive pair;
    - ``log Q_c = LSE_{i in I_c}(-LSE_{j in I_c}(-s S_ij))``: the soft least-hard positive;
    - ``log N_c = LSE_{i in I_c, j not in I_c}(s S_ij)``;
    - ``kind``: ``sp-h`` X = P, ``sp-lh`` X = Q, ``adasp`` ``log X = w log P + (1 - w) log Q`` with
      ``h = log P / s``, ``l = log Q / s`` detached, ``w = 2hl / (h + l)``, w = 0 where h < 0 or h + l = 0.

    Classes without negatives (a batch of one class) have no term.
    """
    check_features_labels(f, y, "sparse_pairwise_loss")
    kind = check_choice("kind", kind.lower().replace("_", "-"), SP_KINDS)
    if not temperature > 0:
        raise ValueError(f"sparse_pairwise_loss: temperature must be positive, got {temperature}")
    s = 1.0 / temperature
    sim = cosine_matrix(f, f)
    same = y.unsqueeze(1) == y.unsqueeze(0)
    row_pos = masked_logsumexp(-s * sim, same, dim=1)
    row_neg = masked_logsumexp(s * sim, ~same, dim=1)
    member = class_members(y)
    log_p = -masked_logsumexp(row_pos.unsqueeze(0).expand_as(member), member, dim=1)
    log_q = masked_logsumexp(-row_pos.unsqueeze(0).expand_as(member), member, dim=1)
    log_n = masked_logsumexp(row_neg.unsqueeze(0).expand_as(member), member, dim=1)
    if kind == "sp-h":
        log_x = log_p
    elif kind == "sp-lh":
        log_x = log_q
    else:
        h, l = log_p.detach() / s, log_q.detach() / s
        denom = h + l
        off = (h < 0) | (denom == 0)
        w = torch.where(
            off, torch.zeros_like(h), 2 * h * l / torch.where(off, torch.ones_like(denom), denom)
        )
        log_x = w * log_p + (1 - w) * log_q
    valid = torch.isfinite(log_n)
    log_n = torch.where(valid, log_n, torch.zeros_like(log_n))
    return masked_mean(F.softplus(log_n - log_x), valid)


@LOSS_REGISTRY.register()
class SparsePairwiseLoss(FeatureLoss):
    """SP-H / SP-LH / AdaSP on ``outputs[SP.FEAT_KEY]``: TEMP, TYPE ("sp-h", "sp-lh", "adasp").
    Also registered as ``AdaSPLoss`` and read from the ``ADASP`` block, as the AdaSP fork of fastreid."""

    cfg_key = "SP"

    config_block = SP_CONFIG
    log_name = "loss_sp"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.temperature = float(block.TEMP)
        self.kind = check_choice(
            self.key("TYPE"), str(block.TYPE).lower().replace("_", "-"), SP_KINDS
        )
        if not self.temperature > 0:
            raise ValueError(f"{self.key('TEMP')} must be positive, got {self.temperature}")

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return sparse_pairwise_loss(self.features(outputs), targets, self.temperature, self.kind)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, kind={self.kind}"


LOSS_REGISTRY.register(SparsePairwiseLoss, name="AdaSPLoss")
