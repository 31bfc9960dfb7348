"""Helpers shared by the losses: input checks, masked reductions, distances, learnable scales.

Masked reductions never produce NaN, neither forward nor backward, when a row has no valid
entry: that is what lets every loss return a zero with a graph on batches with no valid term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reid.config.schema import InvalidArgument

ScaleLike = float | torch.Tensor

DISTANCES = ("euclidean", "sqeuclidean", "cosine")


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        InvalidArgument: Naming the argument ``name``.
    """
    if value not in choices:
        raise InvalidArgument(name, f"must be one of {list(choices)}, got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is > 0.

    Raises:
        InvalidArgument: Naming the argument ``name``.
    """
    if not value > 0:
        raise InvalidArgument(name, f"must be positive, got {value}")
    return float(value)


def check_scale(scale: ScaleLike, name: str = "scale") -> None:
    """Raise unless ``scale`` is a positive number or a tensor (a learned scale, positive by
    construction, see :class:`LogScale`)."""
    if not isinstance(scale, torch.Tensor):
        check_positive(name, scale)


def check_features_labels(f: torch.Tensor, y: torch.Tensor, fn: str) -> None:
    """Raise unless ``f`` is B x D and ``y`` holds B integer labels; ``fn`` names the caller."""
    if f.dim() != 2:
        raise ValueError(f"{fn}: features must be a B x D tensor, got shape {tuple(f.shape)}")
    if y.dim() != 1 or y.shape[0] != f.shape[0]:
        raise ValueError(
            f"{fn}: labels must be a 1-D tensor of length {f.shape[0]}, got shape {tuple(y.shape)}"
        )
    if y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{fn}: labels must be an integer tensor, got {y.dtype}")


def check_label_range(y: torch.Tensor, num_classes: int, fn: str) -> None:
    """Raise unless the labels lie in [0, C): they index a C-row parameter (classifier weights,
    centers, proxies)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{fn}: labels must lie in [0, {num_classes}) (the number of classes), "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x / max(|x|, 1e-12)`` row-wise."""
    return F.normalize(x, p=2.0, dim=-1, eps=1e-12)


def safe_norm(x: torch.Tensor) -> torch.Tensor:
    """Row norms ``max(|x|, 1e-12)`` (the denominators of :func:`l2_normalize`)."""
    return x.norm(p=2, dim=-1).clamp_min(1e-12)


class _CosineMatrix(torch.autograd.Function):
    """``(a b^T) / (max(|a|, eps) max(|b|, eps)^T)`` with a hand-written backward.

    Autograd through "normalise, then multiply" rewrites the C x D operand (a classifier's
    weights, the proxies) several times forward and backward; here the backward is one GEMM per
    input plus one in-place pass for the radial term:
    ``grad_b = (G')^T a - b * sum_i(G cos)_ij / |b_j|^2`` with ``G' = G / (|a| |b|^T)`` (the radial
    term vanishes where the norm is clamped at eps).
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raw_a, raw_b = a.norm(p=2, dim=1), b.norm(p=2, dim=1)
        norm_a, norm_b = raw_a.clamp_min(1e-12), raw_b.clamp_min(1e-12)
        cos = (a @ b.t()) / (norm_a.unsqueeze(1) * norm_b.unsqueeze(0))
        ctx.save_for_backward(a, b, norm_a, norm_b, raw_a > 1e-12, raw_b > 1e-12, cos)
        return cos

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        a, b, norm_a, norm_b, free_a, free_b, cos = ctx.saved_tensors
        scaled = grad / (norm_a.unsqueeze(1) * norm_b.unsqueeze(0))
        radial = grad * cos
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            coef = torch.where(free_a, radial.sum(1) / norm_a.square(), torch.zeros_like(norm_a))
            grad_a = torch.mm(scaled, b).addcmul_(a, coef.unsqueeze(1), value=-1.0)
        if ctx.needs_input_grad[1]:
            coef = torch.where(free_b, radial.sum(0) / norm_b.square(), torch.zeros_like(norm_b))
            grad_b = torch.mm(scaled.t(), a).addcmul_(b, coef.unsqueeze(1), value=-1.0)
        return grad_a, grad_b


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_j) = a^_i . b^_j`` (N x M), with ``x^ = x / max(|x|, 1e-12)``.

    Computed as ``(a b^T) / (|a| |b|^T)`` with a fused backward (:class:`_CosineMatrix`): the same
    value as normalising first, far cheaper when ``b`` is a C x D classifier weight or proxy matrix.
    """
    return _CosineMatrix.apply(a, b)


def rowwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_i)`` for paired rows."""
    return (a * b).sum(dim=-1) / (safe_norm(a) * safe_norm(b))


def pairwise_distance(
    x: torch.Tensor, y: torch.Tensor, distance: str = "euclidean", normalize: bool = False
) -> torch.Tensor:
    """N x M distances: ``euclidean`` (clamped at 1e-12 before the root, as fastreid),
    ``sqeuclidean`` (clamped at 0) or ``cosine`` = 1 - cos; ``normalize`` L2-normalises first."""
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        return 1.0 - cosine_matrix(x, y)
    if normalize:
        x, y = l2_normalize(x), l2_normalize(y)
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    if distance == "sqeuclidean":
        return sq.clamp_min(0.0)
    return sq.clamp_min(1e-12).sqrt()


def masked_logsumexp(
    x: torch.Tensor, mask: torch.Tensor, dim: int, keepdim: bool = False
) -> torch.Tensor:
    """log-sum-exp of ``x`` over the entries where ``mask`` is true; ``-inf`` where there is none.

    Safe for rows whose mask is empty or whose masked values are all ``-inf``: the result is
    ``-inf`` there and the gradient is zero, never NaN.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    masked = torch.where(mask, x, neg_inf)
    peak = masked.amax(dim=dim, keepdim=True).detach()
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.exp(masked - peak).sum(dim=dim, keepdim=True)
    empty = total == 0
    out = peak + torch.log(torch.where(empty, torch.ones_like(total), total))
    out = torch.where(empty, neg_inf, out)
    return out if keepdim else out.squeeze(dim)


def masked_softmax(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax of ``x`` restricted to ``mask``: zero elsewhere, all-zero rows where it is empty."""
    lse = masked_logsumexp(x, mask, dim=dim, keepdim=True)
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    return torch.exp(torch.where(mask, x, neg_inf) - lse)


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``valid``; a zero that keeps the graph (no NaN) if none is valid.

    Invalid entries may hold ``inf``: they are replaced before summing and get zero gradient.
    """
    picked = torch.where(valid, values, torch.zeros_like(values))
    return picked.sum() / valid.sum().clamp_min(1).to(values.dtype)


def softplus_pair_loss(
    lse_p: torch.Tensor, lse_n: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
) -> torch.Tensor:
    """Mean over the anchors with a positive and a negative of ``softplus(lse_p + lse_n)``, the
    pair-wise form shared by circle loss and pair-wise CosFace; anchors without either (whose
    log-sum-exps are ``-inf``) get no term and no NaN gradient."""
    valid = pos.any(1) & neg.any(1)
    zeros = torch.zeros_like(lse_p)
    per_anchor = F.softplus(torch.where(valid, lse_p, zeros) + torch.where(valid, lse_n, zeros))
    return masked_mean(per_anchor, valid)


def zero_loss(f: torch.Tensor) -> torch.Tensor:
    """The loss of a batch with no valid term: zero, with a graph to ``f``."""
    return (f * 0).sum()


def same_label_masks(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives without self, negatives) B x B boolean masks."""
    same = y.unsqueeze(1) == y.unsqueeze(0)
    eye = torch.eye(y.shape[0], dtype=torch.bool, device=y.device)
    return same & ~eye, ~same


def class_index(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(classes present, index of each sample's class in them, class sizes)."""
    classes, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    return classes, inverse, counts


def class_members(y: torch.Tensor) -> torch.Tensor:
    """P x B boolean: row c marks the samples of the c-th class present in the batch."""
    _, inverse = torch.unique(y, return_inverse=True)
    num_classes = int(inverse.max()) + 1 if inverse.numel() else 0
    return inverse.unsqueeze(0) == torch.arange(num_classes, device=y.device).unsqueeze(1)


class LogScale(nn.Module):
    """A positive multiplier ``s`` of similarities or logits (a temperature ``1/s``).

    Learnable: a parameter ``log_scale`` holding ``log s`` (so ``s`` stays positive), initialised
    from ``init``. Fixed: a plain float, exactly ``init``.

    Args:
        init: The (initial) value of ``s``; must be positive.
        learnable: Learn ``s``.
        argument: The owner's argument that ``init`` came from, named by the error.

    >>> LogScale(16.0, learnable=False, argument="sim_scale")()
    16.0
    >>> scale = LogScale(16.0, learnable=True, argument="sim_scale")
    >>> [name for name, _ in scale.named_parameters()], round(scale().item(), 4)
    (['log_scale'], 16.0)
    """

    def __init__(self, init: float, learnable: bool, argument: str) -> None:
        super().__init__()
        self.fixed = check_positive(argument, init)
        self.learnable = bool(learnable)
        if self.learnable:
            self.log_scale = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> ScaleLike:
        """``s``: a 0-dim tensor with a graph when learnable, else the float."""
        return self.log_scale.exp() if self.learnable else self.fixed

    def extra_repr(self) -> str:
        return f"learnable={self.learnable}, init={self.fixed}"


def check_feature_dim(f: torch.Tensor, expected: int, loss: str) -> None:
    """Raise unless ``f`` has the feature dim a loss's parameters were built for.

    Args:
        f: The B x D features the loss was given.
        expected: The loss's ``feat_dim`` argument.
        loss: The loss's name, for the message.
    """
    if f.shape[-1] != expected:
        raise ValueError(
            f"{loss} was built for {expected}-d features (its feat_dim argument; from a config, "
            f"the block's FEAT_DIM, 0 = the head's output dim) but got features of shape "
            f"{tuple(f.shape)}"
        )
