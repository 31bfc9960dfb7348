"""Cross-entropy with label smoothing (fixed or fastreid's adaptive), and OHEM on the ID loss."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import torch
import torch.nn.functional as F

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import WEIGHT, ReidLoss
from .build import LOSS_REGISTRY
from .utils import check_choice

CE_CONFIG = ConfigBlock(
    "MODEL.LOSSES.CE",
    'CrossEntropyLoss: CE on outputs["logits"] (after the classifier\'s margin and scale).',
    {
        "EPSILON": Key(
            0.0,
            "Label smoothing epsilon (0 = plain CE), spread as SMOOTH_OVER says. A negative value "
            "selects fastreid's adaptive smoothing: eps_i = ALPHA * p_i(true class), detached, "
            "targets 1 - eps_i on the true class and eps_i / (C - 1) on each other class.",
        ),
        "SMOOTH_OVER": Key(
            "others",
            'Where label smoothing puts eps: "others" = eps / (C - 1) on each other class, 1 - eps '
            'on the true one (fastreid\'s cross_entropy_loss); "all" = eps / C on every class, '
            "true one included, i.e. 1 - eps + eps / C there (Szegedy et al., torch's "
            "label_smoothing; reid's Base files).",
        ),
        "ALPHA": Key(0.2, "Adaptive smoothing factor, used only when EPSILON < 0."),
        "OHEM_RATIO": Key(
            0.0,
            "OHEM on the ID loss: drop the floor(r * B) samples with the lowest loss, average the "
            "rest (0 = off).",
        ),
        "OHEM_ROUNDING": Key(
            "floor",
            '(open) How many samples OHEM drops: "floor" = floor(r * B) (12 of 64 at r = 0.2) or '
            '"round" = r * B rounded half up (13 of 64).',
        ),
        "SCALE": WEIGHT,
    },
)


SMOOTH_OVER = ("all", "others")


def cross_entropy_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    epsilon: float = 0.0,
    alpha: float = 0.2,
    reduction: str = "mean",
    smooth_over: str = "all",
) -> torch.Tensor:
    """Cross-entropy of ``logits`` against labels ``y``, with label smoothing.

    Args:
        logits: B x C logits.
        y: B labels in [0, C).
        epsilon: ``>= 0``: label smoothing spread as ``smooth_over`` says. ``< 0``: fastreid's
            adaptive smoothing, per sample ``eps_i = alpha * p_i(y_i)`` (the detached softmax
            probability of the true class) and target weights ``(1 - eps_i)`` on the true class,
            ``eps_i / (C - 1)`` on each other class.
        alpha: The adaptive smoothing factor, used when ``epsilon < 0``.
        reduction: "mean" or "none" (per-sample losses, e.g. for :func:`ohem`).
        smooth_over: With ``epsilon >= 0``: "all" = target weights ``(1 - eps)[k = y] + eps / C``
            (equals ``F.cross_entropy(..., label_smoothing=eps)``); "others" = ``1 - eps`` on the
            true class and ``eps / (C - 1)`` on each other class (fastreid's).

    Returns:
        The 0-dim mean loss, or the B per-sample losses.

    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> y = torch.tensor([0, 2])
    >>> round(float(cross_entropy_loss(logits, y)), 4)
    0.8955
    >>> round(float(cross_entropy_loss(logits, y, epsilon=0.1)), 4)
    0.9455
    >>> round(float(cross_entropy_loss(logits, y, epsilon=0.1, smooth_over="others")), 4)
    0.9705
    >>> round(float(cross_entropy_loss(logits, y, epsilon=-1.0, alpha=0.2)), 4)
    1.0423
    """
    if logits.dim() != 2 or y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise ValueError(
            f"cross_entropy_loss: expected B x C logits and B labels, got {tuple(logits.shape)} "
            f"and {tuple(y.shape)}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if epsilon > 1:
        raise ValueError(f"label smoothing epsilon must be <= 1, got {epsilon}")
    if smooth_over not in SMOOTH_OVER:
        raise ValueError(f"smooth_over must be one of {list(SMOOTH_OVER)}, got {smooth_over!r}")
    num_classes = logits.shape[1]
    log_probs = F.log_softmax(logits, dim=1)
    nll = -log_probs.gather(1, y.unsqueeze(1)).squeeze(1)
    if epsilon == 0:
        losses = nll
    elif epsilon > 0 and smooth_over == "all":
        losses = (1.0 - epsilon) * nll - epsilon * log_probs.mean(dim=1)
    elif epsilon > 0:
        if num_classes < 2:
            raise ValueError('label smoothing over the "others" needs at least 2 classes')
        others = -log_probs.sum(dim=1) - nll
        losses = (1.0 - epsilon) * nll + epsilon / (num_classes - 1) * others
    else:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"adaptive label smoothing alpha must be in [0, 1], got {alpha}")
        if num_classes < 2:
            raise ValueError("adaptive label smoothing needs at least 2 classes")
        eps = alpha * torch.exp(-nll).detach()
        others = -log_probs.sum(dim=1) - nll
        losses = (1.0 - eps) * nll + eps / (num_classes - 1) * others
    return losses.mean() if reduction == "mean" else losses


OHEM_ROUNDINGS = ("floor", "round")


def ohem_keep_count(batch_size: int, ratio: float, rounding: str = "floor") -> int:
    """``B - floor(r B)`` (or ``B - round(r B)``, halves rounded up), computed on the decimal value
    of ``r`` (0.29 * 100 drops 29, not 28).

    >>> ohem_keep_count(100, 0.29)
    71
    >>> ohem_keep_count(64, 0.2), ohem_keep_count(64, 0.2, rounding="round")
    (52, 51)
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"OHEM ratio must be in [0, 1), got {ratio}")
    if rounding not in OHEM_ROUNDINGS:
        raise ValueError(f"OHEM rounding must be one of {list(OHEM_ROUNDINGS)}, got {rounding!r}")
    r = Fraction(repr(float(ratio)))
    dropped = r * batch_size
    if rounding == "round":
        dropped += Fraction(1, 2)
    return batch_size - dropped.numerator // dropped.denominator


def ohem(losses: torch.Tensor, ratio: float, rounding: str = "floor") -> torch.Tensor:
    """Online hard example mining: the mean of the ``B - floor(ratio B)`` largest losses.

    Args:
        losses: B per-sample losses.
        ratio: The share of samples dropped, in [0, 1).
        rounding: ``floor`` drops ``floor(ratio B)`` samples, ``round`` drops ``ratio B`` rounded
            half up.

    Returns:
        The 0-dim mean of the kept losses (zero, with a graph, if none is kept).

    >>> round(float(ohem(torch.tensor([0.5, 3.0, 0.1, 2.0]), 0.5)), 4)
    2.5
    """
    if losses.dim() != 1:
        raise ValueError(f"ohem expects per-sample losses (1-D), got shape {tuple(losses.shape)}")
    keep = ohem_keep_count(losses.shape[0], ratio, rounding)
    if keep == 0:
        return (losses * 0).sum()
    return losses.topk(keep, sorted=False).values.mean()


@LOSS_REGISTRY.register()
class CrossEntropyLoss(ReidLoss):
    """ID loss on ``outputs["logits"]`` (after the classifier's margin and scale), see
    :func:`cross_entropy_loss` and :func:`ohem`.

    Args:
        epsilon: Label smoothing (0 = plain CE; < 0 = fastreid's adaptive smoothing).
        alpha: The adaptive smoothing factor, used when ``epsilon < 0``.
        ohem_ratio: OHEM: drop this share of the samples with the lowest loss (0 = off).
        smooth_over: "others" (fastreid's eps / (C - 1), the default here as in the config) or
            "all" (eps / C, the plain function's default).
        ohem_rounding: "floor" or "round": how ``ohem_ratio * B`` becomes a count.
    """

    config_block = CE_CONFIG
    log_name = "loss_cls"

    @configurable
    def __init__(
        self,
        epsilon: float = 0.0,
        alpha: float = 0.2,
        ohem_ratio: float = 0.0,
        smooth_over: str = "others",
        ohem_rounding: str = "floor",
    ) -> None:
        super().__init__()
        self.smooth_over = check_choice("smooth_over", smooth_over, SMOOTH_OVER)
        self.epsilon = float(epsilon)
        self.alpha = float(alpha)
        self.ohem_ratio = float(ohem_ratio)
        if self.epsilon > 1:
            raise InvalidArgument(
                "epsilon", f"must be <= 1 (< 0 = adaptive smoothing), got {self.epsilon}"
            )
        if self.epsilon < 0 and not 0.0 <= self.alpha <= 1.0:
            raise InvalidArgument("alpha", f"must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.ohem_ratio < 1.0:
            raise InvalidArgument(
                "ohem_ratio", f"must be in [0, 1) (0 = off), got {self.ohem_ratio}"
            )
        if ohem_rounding not in OHEM_ROUNDINGS:
            raise InvalidArgument(
                "ohem_rounding", f"must be one of {list(OHEM_ROUNDINGS)}, got {ohem_rounding!r}"
            )
        self.ohem_rounding = str(ohem_rounding)

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        logits = self.read(outputs, OutputKeys.LOGITS)
        losses = cross_entropy_loss(
            logits,
            targets,
            self.epsilon,
            self.alpha,
            reduction="none",
            smooth_over=self.smooth_over,
        )
        if self.ohem_ratio > 0:
            return ohem(losses, self.ohem_ratio, self.ohem_rounding)
        return losses.mean()

    def extra_repr(self) -> str:
        return (
            f"epsilon={self.epsilon}, smooth_over={self.smooth_over}, alpha={self.alpha}, "
            f"ohem_ratio={self.ohem_ratio}, ohem_rounding={self.ohem_rounding}"
        )


__all__ = ["CrossEntropyLoss", "cross_entropy_loss", "ohem", "ohem_keep_count"]
