"""SP-H, SP-LH and AdaSP: the golden values of losses.md, a class loop, the AdaSP fork config."""

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from reid.config import InvalidArgument, load_config
from reid.modeling.losses import (
    LOSS_REGISTRY,
    SparsePairwiseLoss,
    build_losses,
    sparse_pairwise_loss,
)

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]

GOLDEN = [
    ((4, 4, 8), 0.04, 0.207674303805, 0.00153389928546, 0.0202264395935),
    ((4, 4, 8), 0.05, 0.362657420881, 0.00637131321096, 0.0630819970976),
    ((3, 2, 5), 0.04, 0.00518752035473, 0.00130259132267, 0.0029648833678),
    ((8, 4, 16), 0.04, 0.662706693796, 0.137756976704, 0.46088331544),
    ((8, 4, 16), 0.05, 0.75622833517, 0.155993500813, 0.506073790714),
]


def golden_input(p: int, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.arange(p * k, dtype=torch.float64).unsqueeze(1)
    dd = torch.arange(d, dtype=torch.float64).unsqueeze(0)
    c = torch.div(i, k, rounding_mode="floor")
    x = torch.sin(0.7 * (c + 1) * (dd + 1)) + 0.6 * torch.cos(0.37 * (i + 1) * (dd + 2))
    return x, torch.arange(p).repeat_interleave(k)


@pytest.mark.parametrize("shape,temp,sp_h,sp_lh,adasp", GOLDEN)
def test_golden_values(
    shape: tuple[int, int, int], temp: float, sp_h: float, sp_lh: float, adasp: float
) -> None:
    x, y = golden_input(*shape)
    for kind, expected in (("sp-h", sp_h), ("sp-lh", sp_lh), ("adasp", adasp)):
        assert sparse_pairwise_loss(x, y, temp, kind).item() == pytest.approx(
            expected, rel=0, abs=1e-9
        )


def _lse(v: Sequence[float]) -> float:
    m = max(v)
    return m + math.log(sum(math.exp(a - m) for a in v))


def reference_sp(f: torch.Tensor, y: list[int], temp: float, kind: str) -> float:
    s = 1 / temp
    n = len(y)
    S = [
        [float(f[i] @ f[j]) / float(f[i].norm() * f[j].norm()) for j in range(n)] for i in range(n)
    ]
    terms = []
    for c in sorted(set(y)):
        members = [i for i in range(n) if y[i] == c]
        others = [j for j in range(n) if y[j] != c]
        if not others:
            continue
        log_p = -_lse([-s * S[i][j] for i in members for j in members])
        log_q = _lse([-_lse([-s * S[i][j] for j in members]) for i in members])
        log_n = _lse([s * S[i][j] for i in members for j in others])
        if kind == "sp-h":
            log_x = log_p
        elif kind == "sp-lh":
            log_x = log_q
        else:
            h, lh = log_p / s, log_q / s
            w = 0.0 if h < 0 or h + lh == 0 else 2 * h * lh / (h + lh)
            log_x = w * log_p + (1 - w) * log_q
        terms.append(math.log1p(math.exp(log_n - log_x)))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("kind", ["sp-h", "sp-lh", "adasp"])
def test_matches_class_loop_on_unequal_classes(make_batch: MakeBatch, kind: str) -> None:
    f, y = make_batch([4, 1, 2, 3], dim=5)
    f = f + 1.5  # positive similarities, so AdaSP's weight is not always 0
    assert sparse_pairwise_loss(f, y, 0.2, kind).item() == pytest.approx(
        reference_sp(f, y.tolist(), 0.2, kind), rel=1e-9
    )


@pytest.mark.parametrize("kind", ["sp-h", "sp-lh", "adasp"])
def test_gradcheck(kind: str) -> None:
    # AdaSP's weight is detached by definition: gradcheck holds where w is locally constant, i.e.
    # w = 0.
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, generator=g, dtype=torch.float64)
    noise = 0.1 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    f = torch.cat([base, -base + noise])  # each class holds a nearly opposite pair: h < 0, w = 0
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    if kind == "adasp":
        assert sparse_pairwise_loss(f, y, 0.5, "adasp").item() == pytest.approx(
            sparse_pairwise_loss(f, y, 0.5, "sp-lh").item(), rel=1e-12
        )
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: sparse_pairwise_loss(x, y, 0.5, kind), (f,))


def test_adasp_weight_is_detached(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2], dim=4)
    f = (f + 2.0).requires_grad_(True)
    sparse_pairwise_loss(f, y, 0.3, "adasp").backward()
    ref = f.detach().clone().requires_grad_(True)
    s = 1 / 0.3
    fn = ref / ref.norm(dim=1, keepdim=True)
    S = fn @ fn.t()
    terms = []
    for c in y.unique().tolist():
        m = (y == c).nonzero().flatten()
        o = (y != c).nonzero().flatten()
        log_p = -torch.logsumexp((-s * S[m][:, m]).flatten(), 0)
        log_q = torch.logsumexp(-torch.logsumexp(-s * S[m][:, m], 1), 0)
        log_n = torch.logsumexp((s * S[m][:, o]).flatten(), 0)
        h, lh = log_p.item() / s, log_q.item() / s
        w = 0.0 if h < 0 else 2 * h * lh / (h + lh)
        terms.append(torch.nn.functional.softplus(log_n - (w * log_p + (1 - w) * log_q)))
    torch.stack(terms).mean().backward()
    assert f.grad is not None and ref.grad is not None
    assert torch.allclose(f.grad, ref.grad, rtol=1e-9, atol=1e-12)


def test_module_normalises_the_kind_and_checks_its_arguments() -> None:
    x, y = golden_input(4, 4, 8)
    module = SparsePairwiseLoss(temperature=0.05, kind="SP_LH")
    assert module.kind == "sp-lh"
    assert module({"features": x}, y).item() == pytest.approx(0.00637131321096, abs=1e-9)
    with pytest.raises(InvalidArgument, match="^temperature must be positive, got 0"):
        SparsePairwiseLoss(temperature=0)
    with pytest.raises(InvalidArgument, match="^kind must be one of"):
        SparsePairwiseLoss(kind="sp")


def test_adasp_fork_config_loads_with_its_names(tmp_path: Any) -> None:
    yml = tmp_path / "mgn_single_adasp.yml"
    yml.write_text(
        "MODEL:\n  LOSSES:\n    NAME: ('AdaSPLoss',)\n    ADASP:\n      TEMP: 0.05\n"
        "      TYPE: 'sp-lh'\n      SCALE: 2.0\n"
    )
    cfg = load_config(str(yml))
    assert cfg.MODEL.LOSSES.SP.TEMP == 0.05 and cfg.MODEL.LOSSES.SP.TYPE == "sp-lh"
    losses = build_losses(cfg)
    module = losses.losses["AdaSPLoss"]
    assert (
        isinstance(module, SparsePairwiseLoss)
        and module.kind == "sp-lh"
        and module.temperature == 0.05
    )
    x, y = golden_input(4, 4, 8)
    out = losses({"features": x}, y)
    assert out["loss_sp"].item() == pytest.approx(2.0 * 0.00637131321096, abs=1e-9)
    assert LOSS_REGISTRY.get("AdaSPLoss") is LOSS_REGISTRY.get("SparsePairwiseLoss")
