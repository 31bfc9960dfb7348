"""Focal loss and the pair-wise CosFace loss (fastreid's keys FL and COSFACE) against loops."""

import math

import pytest
import torch

from reid.config import InvalidArgument, get_cfg, merge_from_list
from reid.modeling.losses import (
    FocalLoss,
    PairwiseCosFaceLoss,
    build_losses,
    focal_loss,
    pairwise_cosface_loss,
)


def _logits(b: int = 7, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    return logits, torch.randint(0, c, (b,), generator=g)


def reference_focal(logits: torch.Tensor, y: torch.Tensor, alpha: float, gamma: float) -> float:
    total = 0.0
    for i in range(logits.shape[0]):
        z = logits[i].tolist()
        p = math.exp(z[int(y[i])]) / sum(math.exp(v) for v in z)
        total += -alpha * (1 - p) ** gamma * math.log(p)
    return total / logits.shape[0]


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (1.0, 0.0), (0.5, 0.5), (0.75, 3.0)])
def test_focal_loss_matches_loop_and_gradcheck(alpha: float, gamma: float) -> None:
    logits, y = _logits()
    value = focal_loss(logits, y, alpha, gamma)
    assert value.item() == pytest.approx(reference_focal(logits, y, alpha, gamma), rel=1e-12)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, y, alpha, gamma), (logits,))


def test_focal_loss_with_gamma_0_is_alpha_times_cross_entropy() -> None:
    logits, y = _logits(seed=1)
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert focal_loss(logits, y, 0.3, 0.0).item() == pytest.approx(0.3 * ce.item(), rel=1e-12)


def test_focal_loss_stays_finite_where_the_probability_underflows() -> None:
    logits = torch.tensor([[0.0, 200.0]])  # p of class 0 = exp(-200): log p by log_softmax
    value = focal_loss(logits, torch.tensor([0]), 1.0, 2.0)
    assert value.item() == pytest.approx(200.0)


def test_focal_loss_errors() -> None:
    logits, y = _logits()
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_loss(logits, y, 0.25, -1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        focal_loss(logits, y + 5, 0.25, 2.0)
    with pytest.raises(InvalidArgument, match=r"^gamma must be >= 0, got -1"):
        FocalLoss(gamma=-1)


def test_focal_module_reads_logits_from_the_config() -> None:
    cfg = get_cfg()
    merge_from_list(
        cfg,
        [
            "MODEL.LOSSES.NAME",
            "('FocalLoss',)",
            "MODEL.LOSSES.FL.GAMMA",
            "2",
            "MODEL.LOSSES.FL.SCALE",
            "0.5",
        ],
    )
    losses = build_losses(cfg, feat_dim=4)
    module = losses.losses["FocalLoss"]
    assert (module.alpha, module.gamma) == (0.25, 2.0)  # fastreid's defaults; GAMMA 2 read as 2.0
    logits, y = _logits(seed=2)
    values = losses({"logits": logits}, y)
    assert values["loss_focal"].item() == pytest.approx(
        0.5 * reference_focal(logits, y, 0.25, 2.0), rel=1e-12
    )


def reference_cosface(f: torch.Tensor, y: list[int], margin: float, gamma: float) -> float:
    n = len(y)
    unit = [f[i] / f[i].norm() for i in range(n)]
    terms = []
    for a in range(n):
        pos = [float(unit[a] @ unit[p]) for p in range(n) if p != a and y[p] == y[a]]
        neg = [float(unit[a] @ unit[q]) for q in range(n) if y[q] != y[a]]
        if not pos or not neg:
            continue
        lse_p = math.log(sum(math.exp(-gamma * s) for s in pos))
        lse_n = math.log(sum(math.exp(gamma * (s + margin)) for s in neg))
        terms.append(math.log1p(math.exp(lse_p + lse_n)))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("sizes", [[3, 3, 3], [4, 1, 2, 3], [2, 2]])
def test_pairwise_cosface_matches_loop_and_gradcheck(make_batch, sizes) -> None:
    f, y = make_batch(sizes, dim=5)
    value = pairwise_cosface_loss(f, y, 0.25, 4.0)
    assert value.item() == pytest.approx(reference_cosface(f, y.tolist(), 0.25, 4.0), rel=1e-9)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: pairwise_cosface_loss(x, y, 0.35, 3.0), (f,))


def test_pairwise_cosface_module_is_fastreids_cosface_name_and_keys(make_batch) -> None:
    cfg = get_cfg()
    merge_from_list(
        cfg,
        ["MODEL.LOSSES.NAME", "('Cosface',)", "MODEL.LOSSES.COSFACE.MARGIN", "0.35",
         "MODEL.LOSSES.COSFACE.GAMMA", "64"],
    )  # fmt: skip
    losses = build_losses(cfg, feat_dim=5)
    module = losses.losses["Cosface"]
    assert isinstance(module, PairwiseCosFaceLoss) and (module.margin, module.gamma) == (0.35, 64.0)
    f, y = make_batch([3, 3], dim=5)
    values = losses({"features": f}, y)
    assert values["loss_cosface"].item() == pytest.approx(
        reference_cosface(f, y.tolist(), 0.35, 64.0), rel=1e-9
    )


def test_both_equal_fastreids_own_functions(make_batch) -> None:
    fastreid = pytest.importorskip("fastreid.modeling.losses", reason="fastreid not installed")
    logits, y = _logits(seed=4)
    assert focal_loss(logits, y, 0.25, 2.0).item() == pytest.approx(
        fastreid.focal_loss(logits, y, 0.25, 2.0).item(), rel=1e-12
    )
    f, labels = make_batch([4, 4, 4], dim=5)  # P x K: every anchor has positives and negatives
    assert pairwise_cosface_loss(f, labels, 0.25, 16.0).item() == pytest.approx(
        fastreid.pairwise_cosface(f, labels, 0.25, 16.0).item(), rel=1e-9
    )
