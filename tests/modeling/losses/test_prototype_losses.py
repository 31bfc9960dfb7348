"""P2S triplet, PN-tuplet and MPN-tuplet (the batch's class prototypes) against per-anchor loops."""

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from reid.config import InvalidArgument
from reid.modeling.losses import (
    MPNTupletLoss,
    P2STripletLoss,
    PNTupletLoss,
    build_phi,
    mpn_tuplet_loss,
    p2s_triplet_loss,
    pn_tuplet_loss,
)

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _prototype(refs: torch.Tensor, y: list[int], c: int, leave_out: int | None = None) -> Any:
    """The mean of the members of class c but ``leave_out``, None if there is none."""
    members = [i for i in range(len(y)) if y[i] == c and i != leave_out]
    return sum(refs[i] for i in members) / len(members) if members else None


def _d(a: torch.Tensor, b: torch.Tensor, distance: str) -> float:
    return 1 - _cos(a, b) if distance == "cosine" else float((a - b).norm())


def reference_p2s(
    f: torch.Tensor,
    y: list[int],
    distance: str,
    scale: float,
    exclude: bool,
    negatives: list[int] | None = None,
) -> float:
    """``negatives``: the negative class of each anchor (None: the hardest prototype)."""
    classes = sorted(set(y))
    terms = []
    for a in range(len(y)):
        own = _prototype(f, y, y[a], a if exclude else None)
        others = [c for c in classes if c != y[a]]
        if own is None or not others:
            continue
        d_ap = _d(f[a], own, distance)
        if negatives is None:
            d_an = min(_d(f[a], _prototype(f, y, c), distance) for c in others)
        else:
            d_an = _d(f[a], _prototype(f, y, negatives[a]), distance)
        terms.append(math.log1p(math.exp(scale * (d_ap - d_an))))
    return sum(terms) / len(terms) if terms else 0.0


def reference_pn(
    f: torch.Tensor,
    refs: torch.Tensor,
    y: list[int],
    scale: float,
    exclude: bool,
    allowed: list[list[int]] | None = None,
) -> float:
    """``allowed[a]``: the classes in anchor a's softmax (None: every class of the batch)."""
    classes = sorted(set(y))
    terms = []
    for a in range(len(y)):
        own = _prototype(refs, y, y[a], a if exclude else None)
        if own is None or len(classes) < 2:
            continue
        pool = classes if allowed is None else allowed[a]
        logits = [scale * _cos(f[a], own if c == y[a] else _prototype(refs, y, c)) for c in pool]
        target = scale * _cos(f[a], own)
        m = max(logits)
        terms.append(m + math.log(sum(math.exp(v - m) for v in logits)) - target)
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("exclude", [False, True])
def test_p2s_hardest_matches_loop(make_batch: MakeBatch, distance: str, exclude: bool) -> None:
    f, y = make_batch([3, 1, 2, 4], dim=5)
    value = p2s_triplet_loss(f, y, distance, scale=2.5, exclude_anchor=exclude)
    assert value.item() == pytest.approx(
        reference_p2s(f, y.tolist(), distance, 2.5, exclude), rel=1e-9
    )


def test_p2s_random_negative_is_one_uniform_other_class(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 2, 2, 3], dim=5)
    value = p2s_triplet_loss(
        f, y, "cosine", 2.0, negative="random", generator=torch.Generator().manual_seed(4)
    )
    classes, inverse = torch.unique(y, return_inverse=True)
    draw = torch.rand(
        (len(y), len(classes)), generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    draw[torch.arange(len(y)), inverse] = -1
    negatives = classes[draw.argmax(1)].tolist()
    assert all(n != t for n, t in zip(negatives, y.tolist()))
    assert value.item() == pytest.approx(
        reference_p2s(f, y.tolist(), "cosine", 2.0, False, negatives), rel=1e-9
    )


@pytest.mark.parametrize("exclude", [False, True])
def test_pn_all_classes_matches_loop(make_batch: MakeBatch, exclude: bool) -> None:
    f, y = make_batch([3, 1, 2, 4], dim=5)
    value = pn_tuplet_loss(f, y, None, scale=7.0, exclude_anchor=exclude)
    assert value.item() == pytest.approx(reference_pn(f, f, y.tolist(), 7.0, exclude), rel=1e-9)
    assert pn_tuplet_loss(f, y, 16, 7.0, exclude).item() == pytest.approx(value.item(), rel=1e-12)


def test_pn_with_fewer_classes_draws_them_per_anchor(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 3, 2, 2, 3], dim=5)
    value = pn_tuplet_loss(f, y, 3, scale=5.0, generator=torch.Generator().manual_seed(9))
    classes, inverse = torch.unique(y, return_inverse=True)
    draw = torch.rand((len(y), len(classes)), generator=torch.Generator().manual_seed(9))
    draw[torch.arange(len(y)), inverse] = -1
    picked = draw.topk(2, dim=1).indices
    allowed = [sorted({int(y[a])} | {int(classes[c]) for c in picked[a]}) for a in range(len(y))]
    assert all(len(s) == 3 for s in allowed)
    assert value.item() == pytest.approx(
        reference_pn(f, f, y.tolist(), 5.0, False, allowed), rel=1e-9
    )


def test_prototype_losses_gradcheck(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 3, 2], dim=3)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: p2s_triplet_loss(x, y, "cosine", 2.0, exclude_anchor=True), (f,)
    )
    assert torch.autograd.gradcheck(lambda x: p2s_triplet_loss(x, y, "euclidean", 0.5), (f,))
    assert torch.autograd.gradcheck(
        lambda x: pn_tuplet_loss(x, y, None, 3.0, exclude_anchor=True), (f,)
    )


def test_phi_is_linear_bn_linear_without_activation() -> None:
    phi = build_phi(64, 8)
    kinds = [type(m) for m in phi]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Linear]
    assert (phi[0].in_features, phi[0].out_features, phi[2].out_features) == (64, 8, 64)
    assert phi[0].bias is None and phi[2].bias is None
    with pytest.raises(InvalidArgument, match="^reduction \\(8\\) must be a positive divisor of"):
        build_phi(60, 8)


def test_mpn_uses_prototypes_of_phi_of_the_features(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 2, 3], dim=16)
    phi = build_phi(16, 8).double()
    value = mpn_tuplet_loss(f, y, phi, None, scale=6.0)
    refs = phi(f).detach()
    assert value.item() == pytest.approx(reference_pn(f, refs, y.tolist(), 6.0, False), rel=1e-9)
    value.backward()
    first, last = phi[0], phi[2]
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (first.weight, last.weight))


def test_modules_apply_their_arguments(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 2, 3], dim=16)
    p2s = P2STripletLoss(
        distance="euclidean", sim_scale=0.5, learn_scale=False, exclude_anchor=True
    )
    assert p2s({"features": f}, y).item() == pytest.approx(
        reference_p2s(f, y.tolist(), "euclidean", 0.5, True), rel=1e-9
    )
    pn = PNTupletLoss(sim_scale=9.0, learn_scale=False)
    assert pn({"features": f}, y).item() == pytest.approx(
        reference_pn(f, f, y.tolist(), 9.0, False), rel=1e-9
    )
    with pytest.raises(InvalidArgument, match="^classes_per_tuplet must be 0"):
        PNTupletLoss(classes_per_tuplet=1)
    with pytest.raises(InvalidArgument, match="^negative must be one of"):
        P2STripletLoss(negative="semi")


def test_mpn_module_owns_phi_and_a_learnable_scale(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 2, 3], dim=16)
    module = MPNTupletLoss(feat_dim=16, reduction=4).double()
    names = {n for n, _ in module.named_parameters()}
    assert names == {
        "phi.0.weight",
        "phi.1.weight",
        "phi.1.bias",
        "phi.2.weight",
        "scale.log_scale",
    }
    assert module.phi[0].out_features == 4
    value = module({"features": f}, y)
    refs = module.phi(f).detach()
    assert value.item() == pytest.approx(
        reference_pn(f, refs, y.tolist(), module.scale().item(), False), rel=1e-9
    )
    with pytest.raises(
        InvalidArgument, match="^reduction \\(5\\) must be a positive divisor of the feature dim 16"
    ):
        MPNTupletLoss(feat_dim=16, reduction=5)
    assert MPNTupletLoss(feat_dim=32).phi[2].out_features == 32


@pytest.mark.parametrize("exclude", [False, True])
def test_mpn_class_means_before_phis_last_layer_match_mapping_every_sample(
    make_batch: MakeBatch, exclude: bool
) -> None:
    f, y = make_batch([3, 1, 2, 3], dim=16)
    phi = build_phi(16, 4).double()
    per_sample = nn.Sequential(
        phi, nn.Identity()
    )  # ends with no linear layer: phi applied to each sample
    fast = mpn_tuplet_loss(f, y, phi, None, 5.0, exclude_anchor=exclude)
    slow = mpn_tuplet_loss(f, y, per_sample, None, 5.0, exclude_anchor=exclude)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-12)
    assert fast.item() == pytest.approx(
        reference_pn(f, phi(f).detach(), y.tolist(), 5.0, exclude), rel=1e-9
    )
