"""NSL, CosFace, ArcFace and class-level circle logits (plain functions) against element loops."""

import math
from collections.abc import Callable

import pytest
import torch

from reid.modeling.losses import (
    arcface_logits,
    circle_logits,
    cosface_logits,
    cross_entropy_loss,
    normalized_softmax_logits,
)


def _setup(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(5, 4, generator=g, dtype=torch.float64)
    W = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 3, 5, 1])
    return f, W, y


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _loop(
    f: torch.Tensor,
    W: torch.Tensor,
    y: torch.Tensor,
    target_fn: Callable[[float], float],
    other_fn: Callable[[float], float],
    scale: float,
) -> torch.Tensor:
    out = torch.zeros(f.shape[0], W.shape[0], dtype=torch.float64)
    for i in range(f.shape[0]):
        for k in range(W.shape[0]):
            c = _cos(f[i], W[k])
            out[i, k] = scale * (target_fn(c) if k == int(y[i]) else other_fn(c))
    return out


def test_nsl_is_scaled_cosine() -> None:
    f, W, y = _setup()
    assert torch.allclose(
        normalized_softmax_logits(f, W, 14.0),
        _loop(f, W, y, lambda c: c, lambda c: c, 14.0),
        rtol=1e-12,
    )


def test_cosface_subtracts_the_margin_on_the_true_class() -> None:
    f, W, y = _setup()
    expected = _loop(f, W, y, lambda c: c - 0.35, lambda c: c, 64.0)
    assert torch.allclose(cosface_logits(f, W, y, 64.0, 0.35), expected, rtol=1e-12)


def _arc_target(c: float, m: float) -> float:
    c = max(-1.0, min(1.0, c))  # cos clamped to [-1, 1]
    theta = math.acos(c)
    return math.cos(theta + m) if theta <= math.pi - m else c - m * math.sin(m)


@pytest.mark.parametrize("margin", [0.1, 0.5, 1.2])
def test_arcface_adds_the_angle_with_the_fallback_beyond_pi_minus_m(margin: float) -> None:
    f, W, y = _setup(1)
    f[1] = -W[3] * 2.0  # theta = pi for sample 1: the fallback branch
    expected = _loop(f, W, y, lambda c: _arc_target(c, margin), lambda c: c, 30.0)
    assert torch.allclose(arcface_logits(f, W, y, 30.0, margin), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("margin", [0.1, 0.5, 1.2])
def test_arcface_plain_fallback_keeps_cos_theta_plus_m_everywhere(margin: float) -> None:
    f, W, y = _setup(1)
    f[1] = -W[3] * 2.0  # theta = pi: cos(pi + m) = -cos(m), above the insightface value
    f[2] = -W[3] + 0.05 * W[0]  # theta just below pi, also beyond pi - m
    expected = _loop(
        f, W, y, lambda c: math.cos(math.acos(max(-1.0, min(1.0, c))) + margin), lambda c: c, 30.0
    )
    plain = arcface_logits(f, W, y, 30.0, margin, fallback="plain")
    # atol: at theta = pi exactly sin(theta) is clamped to 1e-6 (a finite gradient there).
    assert torch.allclose(plain, expected, rtol=1e-9, atol=1e-4)
    assert plain[1, 3].item() == pytest.approx(-30.0 * math.cos(margin), abs=1e-4)
    insightface = arcface_logits(f, W, y, 30.0, margin)
    assert insightface[1, 3].item() == pytest.approx(-30.0 * (1 + margin * math.sin(margin)))
    # The readings differ exactly on the true classes with theta > pi - m.
    beyond = torch.zeros_like(plain, dtype=torch.bool)
    for i, k in enumerate(y.tolist()):
        beyond[i, k] = math.acos(max(-1.0, min(1.0, _cos(f[i], W[k])))) > math.pi - margin
    assert beyond[1, 3] and beyond[2, 3]
    assert torch.equal(~torch.isclose(plain, insightface, rtol=0, atol=1e-9), beyond)
    with pytest.raises(ValueError, match=r"fallback must be one of \['insightface', 'plain'\]"):
        arcface_logits(f, W, y, 30.0, margin, fallback="easy")


def test_arcface_gradient_is_finite_at_aligned_features() -> None:
    _, W, y = _setup()
    f = W[y].clone().requires_grad_(True)  # theta = 0 on every true class
    cross_entropy_loss(arcface_logits(f, W, y), y).backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def test_circle_logits_use_detached_adaptive_weights() -> None:
    f, W, y = _setup(2)
    m = 0.25
    expected = _loop(
        f,
        W,
        y,
        lambda c: max(1 + m - c, 0) * (c - (1 - m)),
        lambda c: max(c + m, 0) * (c - m),
        64.0,
    )
    assert torch.allclose(circle_logits(f, W, y, 64.0, m), expected, rtol=1e-12)


@pytest.mark.parametrize("fn", [cosface_logits, arcface_logits])
def test_margin_logits_gradcheck(fn: Callable[..., torch.Tensor]) -> None:
    f, W, y = _setup(3)
    f.requires_grad_(True)
    W.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: cross_entropy_loss(fn(a, b, y, 4.0, 0.3), y), (f, W)
    )


def test_margin_logits_validate_labels_and_margin() -> None:
    f, W, _ = _setup()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):
        cosface_logits(f, W, torch.tensor([0, 1, 2, 3, 6]))
    with pytest.raises(ValueError, match=r"ArcFace margin must be in \[0, pi\)"):
        arcface_logits(f, W, torch.tensor([0, 1, 2, 3, 4]), margin=3.5)
