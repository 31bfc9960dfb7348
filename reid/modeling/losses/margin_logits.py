"""Logits of the normalised classifiers trained by CE: NSL, CosFace/LMCL, ArcFace, class Circle.

Each ``*_margin`` function maps the cosine matrix ``cos(f_i, W_k)`` (B x C) and the labels to the
margin-adjusted cosines, before the scale; the ``*_logits`` functions are the complete plain
functions (features and weights in, scaled logits out). The classifier layers of
``reid.modeling.layers.classifiers`` use the ``*_margin`` functions.

The examples use one sample of class 0 with cosine 0.6 to class 0 and 0.8 to class 1.
"""

from __future__ import annotations

import math

import torch

from .utils import ScaleLike, check_label_range, cosine_matrix


def cosine_logits(f: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``cos(f_i, W_k)`` of B x D features and C x D class weights: B x C.

    >>> f, W = torch.tensor([[0.6, 0.8]]), torch.eye(2)
    >>> cosine_logits(f, W)
    tensor([[0.6000, 0.8000]])
    """
    return cosine_matrix(f, W)


def _target_mask(cos: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """B x C, True at each sample's true class."""
    check_label_range(y, cos.shape[1], "margin logits")
    return torch.zeros_like(cos, dtype=torch.bool).scatter_(1, y.unsqueeze(1), True)


def cosface_margin(cos: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """LMCL: ``cos - m`` on the true class of the B x C cosines ``cos``.

    >>> cos, y = torch.tensor([[0.6, 0.8]]), torch.tensor([0])
    >>> cosface_margin(cos, y, 0.2)
    tensor([[0.4000, 0.8000]])
    """
    return cos - margin * _target_mask(cos, y).to(cos.dtype)


ARCFACE_FALLBACKS = ("insightface", "plain")


def arcface_margin(
    cos: torch.Tensor, y: torch.Tensor, margin: float, fallback: str = "insightface"
) -> torch.Tensor:
    """True class: ``cos(theta + m)``; cos clamped to [-1, 1]. ``sin(theta)`` is taken as
    ``sqrt(max(1 - cos^2, 1e-12))`` so the gradient stays finite at cos = +-1.

    Args:
        cos: B x C cosines.
        y: B labels.
        margin: ``m`` in [0, pi).
        fallback: Where ``theta > pi - m`` (cos(theta + m) rises again there): ``insightface``
            uses ``cos(theta) - m sin(m)`` (insightface's reference code, monotonic in theta);
            ``plain`` keeps ``cos(theta + m)`` everywhere (the formula as the survey writes it).

    >>> cos, y = torch.tensor([[0.6, 0.8]]), torch.tensor([0])
    >>> arcface_margin(cos, y, 0.5)
    tensor([[0.1430, 0.8000]])
    >>> far = torch.tensor([[-0.99, 0.5]])  # theta = 3.0 > pi - m
    >>> arcface_margin(far, y, 0.5), arcface_margin(far, y, 0.5, fallback="plain")
    (tensor([[-1.2297,  0.5000]]), tensor([[-0.9364,  0.5000]]))
    """
    if not 0.0 <= margin < math.pi:
        raise ValueError(f"ArcFace margin must be in [0, pi), got {margin}")
    if fallback not in ARCFACE_FALLBACKS:
        raise ValueError(
            f"ArcFace fallback must be one of {list(ARCFACE_FALLBACKS)}, got {fallback!r}"
        )
    mask = _target_mask(cos, y)
    cos = cos.clamp(-1.0, 1.0)
    sin = (1.0 - cos * cos).clamp_min(1e-12).sqrt()
    target = cos * math.cos(margin) - sin * math.sin(margin)
    if fallback == "insightface":
        beyond = cos < math.cos(math.pi - margin)
        target = torch.where(beyond, cos - margin * math.sin(margin), target)
    return torch.where(mask, target, cos)


def circle_margin(cos: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Class-level circle: true class ``a_p (cos - (1 - m))``, others ``a_n (cos - m)`` with
    ``a_p = [1 + m - cos]_+``, ``a_n = [cos + m]_+`` detached.

    >>> cos, y = torch.tensor([[0.6, 0.8]]), torch.tensor([0])
    >>> circle_margin(cos, y, 0.25)
    tensor([[-0.0975,  0.5775]])
    """
    mask = _target_mask(cos, y)
    alpha_p = (1.0 + margin - cos.detach()).clamp_min(0.0)
    alpha_n = (cos.detach() + margin).clamp_min(0.0)
    return torch.where(mask, alpha_p * (cos - (1.0 - margin)), alpha_n * (cos - margin))


def normalized_softmax_logits(
    f: torch.Tensor, W: torch.Tensor, scale: ScaleLike = 14.0
) -> torch.Tensor:
    """NSL: ``s cos``.

    >>> f, W = torch.tensor([[0.6, 0.8]]), torch.eye(2)
    >>> normalized_softmax_logits(f, W, scale=10.0)
    tensor([[6., 8.]])
    """
    return scale * cosine_logits(f, W)


def cosface_logits(
    f: torch.Tensor, W: torch.Tensor, y: torch.Tensor, scale: ScaleLike = 64.0, margin: float = 0.35
) -> torch.Tensor:
    """CosFace / LMCL: ``s (cos - m [k = y])``.

    Args:
        f: B x D features.
        W: C x D class weights.
        y: B labels in [0, C).
        scale: ``s``, a number or a learnable tensor.
        margin: ``m``.

    Returns:
        B x C logits.

    >>> f, W, y = torch.tensor([[0.6, 0.8]]), torch.eye(2), torch.tensor([0])
    >>> cosface_logits(f, W, y, scale=10.0, margin=0.2)
    tensor([[4.0000, 8.0000]])
    """
    return scale * cosface_margin(cosine_logits(f, W), y, margin)


def arcface_logits(
    f: torch.Tensor,
    W: torch.Tensor,
    y: torch.Tensor,
    scale: ScaleLike = 64.0,
    margin: float = 0.5,
    fallback: str = "insightface",
) -> torch.Tensor:
    """ArcFace: ``s cos(theta + m)`` on the true class (see :func:`arcface_margin` for
    ``fallback``), ``s cos`` elsewhere; the other arguments as :func:`cosface_logits`.

    >>> f, W, y = torch.tensor([[0.6, 0.8]]), torch.eye(2), torch.tensor([0])
    >>> arcface_logits(f, W, y, scale=10.0, margin=0.5)
    tensor([[1.4301, 8.0000]])
    """
    return scale * arcface_margin(cosine_logits(f, W), y, margin, fallback)


def circle_logits(
    f: torch.Tensor, W: torch.Tensor, y: torch.Tensor, scale: ScaleLike = 64.0, margin: float = 0.35
) -> torch.Tensor:
    """Class-level circle logits (see :func:`circle_margin`), times ``s``; arguments as
    :func:`cosface_logits`.

    >>> f, W, y = torch.tensor([[0.6, 0.8]]), torch.eye(2), torch.tensor([0])
    >>> circle_logits(f, W, y, scale=10.0, margin=0.25)
    tensor([[-0.9750,  5.7750]])
    """
    return scale * circle_margin(cosine_logits(f, W), y, margin)
