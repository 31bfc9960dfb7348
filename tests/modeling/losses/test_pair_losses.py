"""Contrastive, pair-wise circle, center and Proxy-NCA losses against loops, and their modules."""

import math
from collections.abc import Callable, Sequence

import pytest
import torch

from reid.config import ConfigError, InvalidArgument, get_cfg, merge_from_list
from reid.modeling.losses import (
    CenterLoss,
    CircleLoss,
    ContrastiveLoss,
    ProxyNCALoss,
    center_loss,
    contrastive_loss,
    pairwise_circle_loss,
    proxy_nca_loss,
)

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _lse(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# ---- contrastive -----------------------------------------------------------------------------
def reference_contrastive(
    f: torch.Tensor, y: list[int], pm: float, nm: float, squared: bool, normalize: bool
) -> float:
    n = len(y)
    if normalize:
        f = f / f.norm(dim=1, keepdim=True)
    pos: list[float] = []
    neg: list[float] = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = float((f[i] - f[j]).norm())
            if y[i] == y[j]:
                v = max(d - pm, 0.0)
                pos.append(v * v / 2 if squared else v)
            else:
                v = max(nm - d, 0.0)
                neg.append(v * v / 2 if squared else v)
    return (sum(pos) / len(pos) if pos else 0.0) + (sum(neg) / len(neg) if neg else 0.0)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_contrastive_matches_pair_loop(
    make_batch: MakeBatch, squared: bool, normalize: bool
) -> None:
    f, y = make_batch([3, 1, 2, 4], dim=4)
    margins = (0.1, 1.2) if normalize else (0.5, 3.5)
    value = contrastive_loss(f, y, *margins, squared=squared, normalize=normalize)
    assert value.item() == pytest.approx(
        reference_contrastive(f, y.tolist(), *margins, squared, normalize), rel=1e-9
    )


def test_contrastive_gradcheck_squared(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 3], dim=3)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: contrastive_loss(x, y, 0.0, 10.0, squared=True), (f,))


def test_contrastive_module(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2])
    module = ContrastiveLoss(pos_margin=0.2, neg_margin=1.5, squared=False, normalize=True)
    value = module({"features": f}, y)
    assert value.item() == pytest.approx(
        reference_contrastive(f, y.tolist(), 0.2, 1.5, False, True), rel=1e-9
    )
    assert ContrastiveLoss().squared  # the survey's form by default, as the config
    with pytest.raises(InvalidArgument, match="^pos_margin must be >= 0, got -0.1"):
        ContrastiveLoss(pos_margin=-0.1)


# ---- pair-wise circle ------------------------------------------------------------------------
def reference_circle(f: torch.Tensor, y: list[int], m: float, g: float) -> float:
    n = len(y)
    terms = []
    for a in range(n):
        sp = [_cos(f[a], f[p]) for p in range(n) if p != a and y[p] == y[a]]
        sn = [_cos(f[a], f[q]) for q in range(n) if y[q] != y[a]]
        if not sp or not sn:
            continue
        lp = _lse([-g * max(1 + m - s, 0) * (s - (1 - m)) for s in sp])
        ln = _lse([g * max(s + m, 0) * (s - m) for s in sn])
        terms.append(math.log1p(math.exp(lp + ln)))
    return sum(terms) / len(terms) if terms else 0.0


def test_pairwise_circle_matches_anchor_loop(make_batch: MakeBatch) -> None:
    f, y = make_batch([4, 1, 2, 3], dim=5)
    assert pairwise_circle_loss(f, y, 0.25, 16.0).item() == pytest.approx(
        reference_circle(f, y.tolist(), 0.25, 16.0), rel=1e-9
    )
    module = CircleLoss(margin=0.3, gamma=32.0)
    assert module({"features": f}, y).item() == pytest.approx(
        reference_circle(f, y.tolist(), 0.3, 32.0), rel=1e-9
    )
    assert CircleLoss.config_block.path == "MODEL.LOSSES.CIRCLE"
    assert CircleLoss.log_name == "loss_circle"


def test_pairwise_circle_gradient_treats_alphas_as_constants(make_batch: MakeBatch) -> None:
    # The alphas are detached, so gradcheck does not apply; compare with autograd through a loop.
    f, y = make_batch([2, 2, 3], dim=3)
    x = f.clone().requires_grad_(True)
    pairwise_circle_loss(x, y, 0.25, 4.0).backward()
    ref = f.clone().requires_grad_(True)
    fn = ref / ref.norm(dim=1, keepdim=True)
    terms = []
    for a in range(len(y)):
        lp = [
            -4.0 * max(1.25 - float((fn[a] @ fn[p]).detach()), 0.0) * (fn[a] @ fn[p] - 0.75)
            for p in range(len(y))
            if p != a and y[p] == y[a]
        ]
        ln = [
            4.0 * max(float((fn[a] @ fn[q]).detach()) + 0.25, 0.0) * (fn[a] @ fn[q] - 0.25)
            for q in range(len(y))
            if y[q] != y[a]
        ]
        terms.append(
            torch.nn.functional.softplus(
                torch.logsumexp(torch.stack(lp), 0) + torch.logsumexp(torch.stack(ln), 0)
            )
        )
    torch.stack(terms).mean().backward()
    assert x.grad is not None and ref.grad is not None
    assert torch.allclose(x.grad, ref.grad, rtol=1e-9, atol=1e-12)


# ---- center ----------------------------------------------------------------------------------
def test_center_loss_is_mean_squared_distance_without_half(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 3, 1], dim=4, contiguous=True)
    centers = torch.randn(5, 4, dtype=torch.float64)
    expected = sum(float(((f[i] - centers[int(y[i])]) ** 2).sum()) for i in range(len(y))) / len(y)
    assert center_loss(f, y, centers).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        center_loss(f, y, centers[:2])


def test_center_module_owns_centers_with_their_own_group() -> None:
    module = CenterLoss(num_classes=7, feat_dim=16, lr=0.25)
    assert module.centers.shape == (7, 16)
    groups = module.param_groups()
    assert len(groups) == 1 and groups[0]["params"][0] is module.centers
    assert groups[0]["lr"] == 0.25 and groups[0]["weight_decay"] == 0.0
    f = torch.randn(4, 16)
    y = torch.tensor([0, 6, 6, 2])
    value = module({"features": f}, y)
    assert value.item() == pytest.approx(center_loss(f, y, module.centers).item())
    value.backward()
    grad = module.centers.grad
    assert grad is not None
    assert grad[[1, 3, 4, 5]].abs().sum() == 0 and grad[6].abs().sum() > 0


@pytest.mark.parametrize(
    "opts,head_dim,dim",
    [
        ([], None, 2048),
        (["MODEL.HEADS.EMBEDDING_DIM", "64"], None, 64),
        (["MODEL.HEADS.EMBEDDING_DIM", "64"], 96, 96),
        (["MODEL.LOSSES.CENTER.FEAT_DIM", "8"], 96, 8),
    ],
)
def test_center_feat_dim_from_a_config(opts: list[str], head_dim: int | None, dim: int) -> None:
    # Order: CENTER.FEAT_DIM > the head's output dim passed in > HEADS.EMBEDDING_DIM >
    # BACKBONE.FEAT_DIM.
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.HEADS.NUM_CLASSES", "3", "MODEL.BACKBONE.FEAT_DIM", "2048", *opts])
    args = CenterLoss.from_config(cfg, feat_dim=head_dim)
    assert CenterLoss(**args).centers.shape == (3, dim)


def test_center_config_errors_name_the_keys() -> None:
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.HEADS.NUM_CLASSES", "3", "MODEL.BACKBONE.FEAT_DIM", "0"])
    with pytest.raises(
        ConfigError,
        match="CenterLoss cannot infer the dim of its features: set MODEL.LOSSES.CENTER.FEAT_DIM",
    ):
        CenterLoss.from_config(cfg)
    merge_from_list(cfg, ["MODEL.HEADS.NUM_CLASSES", "0", "MODEL.BACKBONE.FEAT_DIM", "2048"])
    with pytest.raises(ConfigError, match="MODEL.HEADS.NUM_CLASSES is 0"):
        CenterLoss.from_config(cfg)


def test_center_module_checks_its_arguments_and_the_feature_dim() -> None:
    with pytest.raises(InvalidArgument, match="^num_classes must be positive, got 0"):
        CenterLoss(num_classes=0, feat_dim=8)
    module = CenterLoss(num_classes=3, feat_dim=8)
    with pytest.raises(ValueError, match="CenterLoss was built for 8-d features .*feat_dim"):
        module({"features": torch.zeros(2, 4)}, torch.tensor([0, 1]))


# ---- proxy NCA -------------------------------------------------------------------------------
def reference_proxy_nca(
    f: torch.Tensor, y: list[int], proxies: torch.Tensor, s: float, exclude: bool
) -> float:
    terms = []
    for i in range(len(y)):
        logits = [-s * float(((f[i] / f[i].norm() - p / p.norm()) ** 2).sum()) for p in proxies]
        t = int(y[i])
        denom = [v for k, v in enumerate(logits) if not (exclude and k == t)]
        terms.append(_lse(denom) - logits[t])
    return sum(terms) / len(terms)


@pytest.mark.parametrize("exclude", [False, True])
def test_proxy_nca_matches_loop_for_both_denominators(make_batch: MakeBatch, exclude: bool) -> None:
    f, y = make_batch([2, 3, 1], dim=4, contiguous=True)
    proxies = torch.randn(5, 4, dtype=torch.float64)
    value = proxy_nca_loss(f, y, proxies, scale=3.0, exclude_positive=exclude)
    assert value.item() == pytest.approx(
        reference_proxy_nca(f, y.tolist(), proxies, 3.0, exclude), rel=1e-9
    )
    f.requires_grad_(True)
    proxies.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: proxy_nca_loss(a, y, b, 2.0, exclude), (f, proxies)
    )


def test_proxy_nca_module_parameters_and_scale() -> None:
    module = ProxyNCALoss(num_classes=6, feat_dim=5, sim_scale=4.0, learn_scale=True).double()
    assert dict(module.named_parameters()).keys() == {"proxies", "scale.log_scale"}
    f = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 5, 5, 2])
    value = module({"features": f}, y)
    expected = reference_proxy_nca(
        f, y.tolist(), module.proxies.detach(), module.scale().item(), True
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)
    value.backward()
    assert module.proxies.grad is not None and module.proxies.grad.abs().sum() > 0
    assert module.scale.log_scale.grad is not None and module.scale.log_scale.grad != 0
    with pytest.raises(InvalidArgument, match="^exclude_positive needs at least 2 classes"):
        ProxyNCALoss(num_classes=1, feat_dim=5)
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.LOSSES.PROXY_NCA.FEAT_DIM", "5"])
    with pytest.raises(ConfigError, match="ProxyNCALoss needs the number of training identities"):
        ProxyNCALoss.from_config(cfg)
