"""Cross-entropy (fixed and adaptive label smoothing), OHEM, and the CrossEntropyLoss module."""

import math

import pytest
import torch
import torch.nn.functional as F

from reid.config import InvalidArgument, get_cfg, merge_from_list
from reid.modeling.losses import CrossEntropyLoss, cross_entropy_loss, ohem
from reid.modeling.losses.cross_entropy import ohem_keep_count


def _logits(b: int = 7, c: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g, dtype=torch.float64) * 3, torch.randint(
        0, c, (b,), generator=g
    )


def _ref_smoothed(logits: torch.Tensor, y: torch.Tensor, eps: float) -> list[float]:
    """Survey formula: -(1 - eps) log p_y - eps / C sum_k log p_k, per sample."""
    out = []
    for i in range(logits.shape[0]):
        z = logits[i].tolist()
        lse = math.log(sum(math.exp(v) for v in z))
        logp = [v - lse for v in z]
        out.append(-(1 - eps) * logp[int(y[i])] - eps / len(z) * sum(logp))
    return out


def _ref_adaptive(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> list[float]:
    """fastreid: eps_i = alpha p_y; targets 1 - eps_i on y and eps_i / (C - 1) elsewhere."""
    out = []
    for i in range(logits.shape[0]):
        z = logits[i].tolist()
        lse = math.log(sum(math.exp(v) for v in z))
        logp = [v - lse for v in z]
        t = int(y[i])
        eps = alpha * math.exp(logp[t])
        out.append(
            -(1 - eps) * logp[t]
            - sum(eps / (len(z) - 1) * logp[k] for k in range(len(z)) if k != t)
        )
    return out


def _ref_smoothed_others(logits: torch.Tensor, y: torch.Tensor, eps: float) -> list[float]:
    """fastreid's fixed smoothing: targets 1 - eps on y and eps / (C - 1) on every other class."""
    out = []
    for i in range(logits.shape[0]):
        z = logits[i].tolist()
        lse = math.log(sum(math.exp(v) for v in z))
        logp = [v - lse for v in z]
        t = int(y[i])
        out.append(
            -(1 - eps) * logp[t]
            - sum(eps / (len(z) - 1) * logp[k] for k in range(len(z)) if k != t)
        )
    return out


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smoothing_over_the_other_classes_matches_fastreids_formula(eps: float) -> None:
    logits, y = _logits(seed=7)
    per = cross_entropy_loss(logits, y, eps, reduction="none", smooth_over="others")
    expected = torch.tensor(_ref_smoothed_others(logits, y, eps), dtype=torch.float64)
    torch.testing.assert_close(per, expected, rtol=1e-12, atol=1e-12)
    if eps > 0:  # eps / (C - 1) is not eps / C
        assert not torch.allclose(per, cross_entropy_loss(logits, y, eps, reduction="none"))
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: cross_entropy_loss(z, y, eps, smooth_over="others"), (logits,)
    )


def test_smoothing_over_the_others_needs_two_classes_and_a_known_choice() -> None:
    logits, y = torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match='"others" needs at least 2 classes'):
        cross_entropy_loss(logits, y, 0.1, smooth_over="others")
    with pytest.raises(ValueError, match=r"smooth_over must be one of \['all', 'others'\]"):
        cross_entropy_loss(logits, y, 0.1, smooth_over="rest")
    with pytest.raises(InvalidArgument, match=r"^smooth_over must be one of"):
        CrossEntropyLoss(smooth_over="rest")


def test_module_and_config_default_to_fastreids_smoothing() -> None:
    logits, y = _logits(seed=8)
    expected = sum(_ref_smoothed_others(logits, y, 0.1)) / len(y)
    assert CrossEntropyLoss(epsilon=0.1)({"logits": logits}, y).item() == pytest.approx(
        expected, rel=1e-12
    )
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.LOSSES.CE.EPSILON", "0.1"])
    assert CrossEntropyLoss(cfg).smooth_over == "others"
    fastreid = pytest.importorskip("fastreid.modeling.losses", reason="fastreid not installed")
    theirs = fastreid.cross_entropy_loss(logits, y, 0.1, 0.2)
    assert theirs.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_survey_formula_and_torch(eps: float) -> None:
    logits, y = _logits()
    per = cross_entropy_loss(logits, y, eps, reduction="none")
    assert torch.allclose(
        per,
        torch.tensor(_ref_smoothed(logits, y, eps), dtype=torch.float64),
        rtol=1e-12,
        atol=1e-12,
    )
    mean = cross_entropy_loss(logits, y, eps)
    assert torch.allclose(mean, F.cross_entropy(logits, y, label_smoothing=eps), rtol=1e-12)


def test_adaptive_smoothing_is_fastreids_with_detached_epsilon() -> None:
    logits, y = _logits(seed=1)
    logits.requires_grad_(True)
    per = cross_entropy_loss(logits, y, epsilon=-1.0, alpha=0.3, reduction="none")
    assert torch.allclose(
        per, torch.tensor(_ref_adaptive(logits.detach(), y, 0.3), dtype=torch.float64), rtol=1e-12
    )
    # eps_i is a constant for the gradient: the gradient equals that of CE with fixed per-sample
    # targets.
    per.sum().backward()
    with torch.no_grad():
        p = logits.softmax(1)
        eps = 0.3 * p[torch.arange(len(y)), y]
        target = (eps / (logits.shape[1] - 1)).unsqueeze(1).expand_as(p).clone()
        target[torch.arange(len(y)), y] = 1 - eps
    assert logits.grad is not None
    assert torch.allclose(logits.grad, p - target, rtol=1e-10, atol=1e-12)


def test_cross_entropy_gradcheck() -> None:
    logits, y = _logits(4, 3)
    logits.requires_grad_(True)
    # (adaptive smoothing detaches eps_i on purpose: its gradient is checked analytically above)
    assert torch.autograd.gradcheck(lambda z: cross_entropy_loss(z, y, 0.1), (logits,))


def test_cross_entropy_rejects_bad_arguments() -> None:
    logits, y = _logits()
    with pytest.raises(ValueError, match="epsilon must be <= 1"):
        cross_entropy_loss(logits, y, 1.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        cross_entropy_loss(logits, y, -1.0, alpha=2.0)
    with pytest.raises(ValueError, match="B x C logits"):
        cross_entropy_loss(logits[0], y)


@pytest.mark.parametrize(
    "ratio,batch,keep",
    [(0.2, 64, 52), (0.29, 100, 71), (0.7, 10, 3), (0.0, 5, 5), (0.5, 1, 1), (0.99, 3, 1)],
)
def test_ohem_keep_count_uses_exact_integer_arithmetic(ratio: float, batch: int, keep: int) -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point; the decimal value drops exactly 29.
    assert ohem_keep_count(batch, ratio) == keep


@pytest.mark.parametrize(
    "ratio,batch,keep",
    # dropped = r B rounded half up: 12.8 -> 13, 2.5 -> 3, 0.25 -> 0, 29 -> 29, 0.5 -> 1
    [(0.2, 64, 51), (0.25, 10, 7), (0.05, 5, 5), (0.29, 100, 71), (0.5, 1, 0), (0.0, 5, 5)],
)
def test_ohem_keep_count_rounded(ratio: float, batch: int, keep: int) -> None:
    assert ohem_keep_count(batch, ratio, rounding="round") == keep


def test_ohem_rounding_round_drops_one_more_of_64_at_the_papers_ratio() -> None:
    losses = torch.arange(1, 65, dtype=torch.float64)  # 1..64
    assert ohem(losses, 0.2).item() == pytest.approx(sum(range(13, 65)) / 52)
    assert ohem(losses, 0.2, rounding="round").item() == pytest.approx(sum(range(14, 65)) / 51)
    with pytest.raises(ValueError, match=r"OHEM rounding must be one of \['floor', 'round'\]"):
        ohem(losses, 0.2, rounding="ceil")


def test_ohem_averages_the_largest_losses_and_only_they_get_gradient() -> None:
    losses = torch.tensor(
        [0.5, 3.0, 0.1, 2.0, 1.0, 4.0, 0.2, 0.3, 0.4, 0.6], dtype=torch.float64, requires_grad=True
    )
    value = ohem(losses, 0.2)  # drops floor(2) = 2 smallest: 0.1 and 0.2
    kept = sorted(losses.tolist())[2:]
    assert value.item() == pytest.approx(sum(kept) / 8, rel=1e-12)
    value.backward()
    expected = torch.tensor(
        [1 / 8 if v >= 0.3 else 0.0 for v in losses.tolist()], dtype=torch.float64
    )
    assert losses.grad is not None and torch.equal(losses.grad, expected)
    with pytest.raises(ValueError, match=r"OHEM ratio must be in \[0, 1\)"):
        ohem(losses, 1.0)


def test_ohem_is_invariant_to_batch_order() -> None:
    losses = torch.rand(20, dtype=torch.float64)
    perm = torch.randperm(20)
    assert ohem(losses, 0.3).item() == pytest.approx(ohem(losses[perm], 0.3).item(), rel=1e-14)


def test_module_reads_logits_and_applies_smoothing_and_ohem() -> None:
    logits, y = _logits(10, 6, seed=3)
    module = CrossEntropyLoss(epsilon=0.1, ohem_ratio=0.2, smooth_over="all")
    per = torch.tensor(_ref_smoothed(logits, y, 0.1), dtype=torch.float64)
    expected = per.sort(descending=True).values[:8].mean()
    assert module({"logits": logits}, y).item() == pytest.approx(expected.item(), rel=1e-12)
    assert CrossEntropyLoss.config_block.path == "MODEL.LOSSES.CE"
    assert CrossEntropyLoss.log_name == "loss_cls"


def test_module_ohem_rounding() -> None:
    logits, y = _logits(10, 6, seed=3)
    per = torch.tensor(_ref_smoothed(logits, y, 0.0), dtype=torch.float64)
    largest = per.sort(descending=True).values
    # r B = 2.5: floor drops 2 (keeps 8), round drops 3 (keeps 7).
    floor = CrossEntropyLoss(ohem_ratio=0.25)({"logits": logits}, y)
    rounded = CrossEntropyLoss(ohem_ratio=0.25, ohem_rounding="round")({"logits": logits}, y)
    assert floor.item() == pytest.approx(largest[:8].mean().item(), rel=1e-12)
    assert rounded.item() == pytest.approx(largest[:7].mean().item(), rel=1e-12)
    with pytest.raises(InvalidArgument, match=r"^ohem_rounding must be one of"):
        CrossEntropyLoss(ohem_ratio=0.2, ohem_rounding="ceil")


def test_module_negative_epsilon_selects_adaptive_smoothing_with_alpha() -> None:
    logits, y = _logits(seed=4)
    module = CrossEntropyLoss(epsilon=-1.0, alpha=0.4)
    expected = sum(_ref_adaptive(logits, y, 0.4)) / len(y)
    assert module({"logits": logits}, y).item() == pytest.approx(expected, rel=1e-12)


def test_module_errors_name_the_argument() -> None:
    with pytest.raises(InvalidArgument, match=r"^ohem_ratio must be in \[0, 1\)"):
        CrossEntropyLoss(ohem_ratio=1.0)
    with pytest.raises(InvalidArgument, match=r"^alpha must be in \[0, 1\]"):
        CrossEntropyLoss(epsilon=-1.0, alpha=1.5)
    with pytest.raises(InvalidArgument, match="^epsilon must be <= 1"):
        CrossEntropyLoss(epsilon=1.5)
    with pytest.raises(KeyError, match="'logits'.*outputs dict has only: \\['features'\\]"):
        CrossEntropyLoss()({"features": torch.zeros(2, 3)}, torch.zeros(2, dtype=torch.int64))
