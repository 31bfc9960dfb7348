"""Sparse pairwise losses (AdaSP paper): SP-H, SP-LH and AdaSP, one term per class of the batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    check_choice,
    check_features_labels,
    check_positive,
    class_members,
    cosine_matrix,
    masked_logsumexp,
    masked_mean,
)

SP_CONFIG = ConfigBlock(
    "MODEL.LOSSES.SP",
    "SparsePairwiseLoss (alias AdaSPLoss; the AdaSP fork's block ADASP is read as SP).",
    {
        "TEMP": Key(
            0.04, "Temperature T of the cosine similarities (0.04 person, 0.05 vehicle ReID)."
        ),
        "TYPE": Key(
            "adasp",
            '"sp-h" (hardest positive pair), "sp-lh" (least-hard positive) or "adasp" (adaptive '
            "mix).",
        ),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


SP_KINDS = ("sp-h", "sp-lh", "adasp")


def check_sp_kind(kind: str) -> str:
    """``kind`` lower-cased with ``_`` as ``-`` ("SP_H" -> "sp-h"), if it is one of SP_KINDS."""
    return check_choice("kind", kind.lower().replace("_", "-"), SP_KINDS)


def sparse_pairwise_loss(
    f: torch.Tensor, y: torch.Tensor, temperature: float = 0.04, kind: str = "adasp"
) -> torch.Tensor:
    """``mean_c softplus(log N_c - log X_c)`` with s = 1 / T, S the cosine similarities, I_c the
    samples of class c:

    - ``log P_c = -LSE_{i, j in I_c}(-s S_ij)`` (self pairs included): the soft hardest positive
      pair;
    - ``log Q_c = LSE_{i in I_c}(-LSE_{j in I_c}(-s S_ij))``: the soft least-hard positive;
    - ``log N_c = LSE_{i in I_c, j not in I_c}(s S_ij)``.

    Classes without negatives (a batch of one class) have no term.

    Args:
        f: B x D features.
        y: B labels.
        temperature: T.
        kind: ``sp-h`` X = P, ``sp-lh`` X = Q, ``adasp`` ``log X = w log P + (1 - w) log Q`` with
            ``h = log P / s``, ``l = log Q / s`` detached, ``w = 2hl / (h + l)``, w = 0 where
            h < 0 or h + l = 0 (case and ``_`` / ``-`` do not matter).

    Returns:
        The 0-dim loss.

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> round(float(sparse_pairwise_loss(f, y, temperature=0.5, kind="sp-h")), 4)
    1.5668
    >>> round(float(sparse_pairwise_loss(f, y, temperature=0.5, kind="adasp")), 4)
    0.9091
    """
    check_features_labels(f, y, "sparse_pairwise_loss")
    kind = check_sp_kind(kind)
    s = 1.0 / check_positive("temperature", temperature)
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
        hard, least_hard = log_p.detach() / s, log_q.detach() / s
        denom = hard + least_hard
        off = (hard < 0) | (denom == 0)
        safe_denom = torch.where(off, torch.ones_like(denom), denom)
        w = torch.where(off, torch.zeros_like(hard), 2 * hard * least_hard / safe_denom)
        log_x = w * log_p + (1 - w) * log_q
    valid = torch.isfinite(log_n)
    log_n = torch.where(valid, log_n, torch.zeros_like(log_n))
    return masked_mean(F.softplus(log_n - log_x), valid)


@LOSS_REGISTRY.register()
class SparsePairwiseLoss(FeatureLoss):
    """SP-H / SP-LH / AdaSP on ``outputs[feat_key]`` (see :func:`sparse_pairwise_loss`).

    Also registered as ``AdaSPLoss``; the config loader reads the AdaSP fork's block ADASP as SP.

    Args:
        temperature: T, positive (the block's TEMP).
        kind: "sp-h", "sp-lh" or "adasp" (the block's TYPE).
        feat_key: The outputs key of the features.
    """

    config_block = SP_CONFIG
    log_name = "loss_sp"

    @configurable
    def __init__(
        self, temperature: float = 0.04, kind: str = "adasp", feat_key: str = OutputKeys.FEATURES
    ) -> None:
        super().__init__(feat_key)
        self.temperature = check_positive("temperature", temperature)
        self.kind = check_sp_kind(str(kind))

    @classmethod
    def from_config(cls, cfg: CfgNode, feat_dim: int | None = None) -> ConfigArgs:
        rename = {"TEMP": "temperature", "TYPE": "kind"}
        return cls.config_block.arguments(cfg, skip=("SCALE",), rename=rename)

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return sparse_pairwise_loss(self.features(outputs), targets, self.temperature, self.kind)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, kind={self.kind}"


LOSS_REGISTRY.register(SparsePairwiseLoss, name="AdaSPLoss")
