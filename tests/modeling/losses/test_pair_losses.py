"""Contrastive, pair-wise circle, center and Proxy-NCA losses against loops, and their modules."""

import math

import pytest
import torch

from reid.config import get_cfg
from reid.config.config import merge_from_list
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


def _cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _cfg(*opts):
    cfg = get_cfg()
    merge_from_list(cfg, list(opts))
    return cfg


# ---- contrastive -----------------------------------------------------------------------------
def reference_contrastive(f, y, pm, nm, squared, normalize):
    n = len(y)
    if normalize:
        f = f / f.norm(dim=1, keepdim=True)
    pos, neg = [], []
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
def test_contrastive_matches_pair_loop(make_batch, squared, normalize):
    f, y = make_batch([3, 1, 2, 4], dim=4)
    margins = (0.1, 1.2) if normalize else (0.5, 3.5)
    value = contrastive_loss(f, y, *margins, squared=squared, normalize=normalize)
    assert value.item() == pytest.approx(
        reference_contrastive(f, y.tolist(), *margins, squared, normalize), rel=1e-9
    )


def test_contrastive_gradcheck_squared(make_batch):
    f, y = make_batch([2, 3], dim=3)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: contrastive_loss(x, y, 0.0, 10.0, squared=True), (f,))


def test_contrastive_module_keys(make_batch):
    f, y = make_batch([3, 3, 2])
    cfg = _cfg(
        "MODEL.LOSSES.CONTRASTIVE.POS_MARGIN",
        0.2,
        "MODEL.LOSSES.CONTRASTIVE.NEG_MARGIN",
        1.5,
        "MODEL.LOSSES.CONTRASTIVE.SQUARED",
        False,
        "MODEL.LOSSES.CONTRASTIVE.NORMALIZE",
        True,
    )
    value = ContrastiveLoss(cfg)({"features": f}, y)
    assert value.item() == pytest.approx(
        reference_contrastive(f, y.tolist(), 0.2, 1.5, False, True), rel=1e-9
    )
    with pytest.raises(ValueError, match="MODEL.LOSSES.CONTRASTIVE.POS_MARGIN"):
        ContrastiveLoss(_cfg("MODEL.LOSSES.CONTRASTIVE.POS_MARGIN", -0.1))


# ---- pair-wise circle ------------------------------------------------------------------------
def reference_circle(f, y, m, g):
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


def test_pairwise_circle_matches_anchor_loop(make_batch):
    f, y = make_batch([4, 1, 2, 3], dim=5)
    assert pairwise_circle_loss(f, y, 0.25, 16.0).item() == pytest.approx(
        reference_circle(f, y.tolist(), 0.25, 16.0), rel=1e-9
    )
    module = CircleLoss(_cfg("MODEL.LOSSES.CIRCLE.MARGIN", 0.3, "MODEL.LOSSES.CIRCLE.GAMMA", 32.0))
    assert module({"features": f}, y).item() == pytest.approx(
        reference_circle(f, y.tolist(), 0.3, 32.0), rel=1e-9
    )
    assert CircleLoss.cfg_key == "CIRCLE" and CircleLoss.log_name == "loss_circle"


def test_pairwise_circle_gradient_treats_alphas_as_constants(make_batch):
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
    assert torch.allclose(x.grad, ref.grad, rtol=1e-9, atol=1e-12)


# ---- center ----------------------------------------------------------------------------------
def test_center_loss_is_mean_squared_distance_without_half(make_batch):
    f, y = make_batch([2, 3, 1], dim=4, contiguous=True)
    centers = torch.randn(5, 4, dtype=torch.float64)
    expected = sum(float(((f[i] - centers[int(y[i])]) ** 2).sum()) for i in range(len(y))) / len(y)
    assert center_loss(f, y, centers).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        center_loss(f, y, centers[:2])


def test_center_module_owns_centers_with_their_own_group():
    cfg = _cfg(
        "MODEL.HEADS.NUM_CLASSES",
        7,
        "MODEL.HEADS.EMBEDDING_DIM",
        16,
        "MODEL.LOSSES.CENTER.LR",
        0.25,
    )
    module = CenterLoss(cfg)
    assert module.centers.shape == (7, 16)
    groups = module.param_groups()
    assert len(groups) == 1 and groups[0]["params"][0] is module.centers
    assert groups[0]["lr"] == 0.25 and groups[0]["weight_decay"] == 0.0
    f = torch.randn(4, 16)
    y = torch.tensor([0, 6, 6, 2])
    value = module({"features": f}, y)
    assert value.item() == pytest.approx(center_loss(f, y, module.centers).item())
    value.backward()
    assert (
        module.centers.grad[[1, 3, 4, 5]].abs().sum() == 0
        and module.centers.grad[6].abs().sum() > 0
    )


def test_center_module_feat_dim_sources_and_errors():
    # Order: CENTER.FEAT_DIM > the head's output dim passed in > HEADS.EMBEDDING_DIM > BACKBONE.FEAT_DIM.
    base = ("MODEL.HEADS.NUM_CLASSES", 3, "MODEL.BACKBONE.FEAT_DIM", 2048)
    assert CenterLoss(_cfg(*base)).centers.shape == (3, 2048)
    assert CenterLoss(_cfg(*base, "MODEL.HEADS.EMBEDDING_DIM", 64)).centers.shape == (3, 64)
    assert CenterLoss(_cfg(*base, "MODEL.HEADS.EMBEDDING_DIM", 64), feat_dim=96).centers.shape == (
        3,
        96,
    )
    assert CenterLoss(
        _cfg(*base, "MODEL.LOSSES.CENTER.FEAT_DIM", 8), feat_dim=96
    ).centers.shape == (3, 8)
    with pytest.raises(
        ValueError,
        match="CenterLoss cannot infer the dim of its features: set MODEL.LOSSES.CENTER.FEAT_DIM",
    ):
        CenterLoss(_cfg("MODEL.HEADS.NUM_CLASSES", 3, "MODEL.BACKBONE.FEAT_DIM", 0))
    with pytest.raises(ValueError, match="MODEL.HEADS.NUM_CLASSES is 0"):
        CenterLoss(_cfg("MODEL.BACKBONE.FEAT_DIM", 2048))
    module = CenterLoss(_cfg("MODEL.HEADS.NUM_CLASSES", 3, "MODEL.LOSSES.CENTER.FEAT_DIM", 8))
    with pytest.raises(ValueError, match="built for 8-d features"):
        module({"features": torch.zeros(2, 4)}, torch.tensor([0, 1]))


# ---- proxy NCA -------------------------------------------------------------------------------
def reference_proxy_nca(f, y, proxies, s, exclude):
    terms = []
    for i in range(len(y)):
        logits = [-s * float(((f[i] / f[i].norm() - p / p.norm()) ** 2).sum()) for p in proxies]
        t = int(y[i])
        denom = [v for k, v in enumerate(logits) if not (exclude and k == t)]
        terms.append(_lse(denom) - logits[t])
    return sum(terms) / len(terms)


@pytest.mark.parametrize("exclude", [False, True])
def test_proxy_nca_matches_loop_for_both_denominators(make_batch, exclude):
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


def test_proxy_nca_module_parameters_and_scale():
    cfg = _cfg(
        "MODEL.HEADS.NUM_CLASSES",
        6,
        "MODEL.LOSSES.PROXY_NCA.FEAT_DIM",
        5,
        "MODEL.LOSSES.PROXY_NCA.SIM_SCALE",
        4.0,
        "MODEL.LOSSES.PROXY_NCA.LEARN_SCALE",
        True,
    )
    module = ProxyNCALoss(cfg).double()
    assert dict(module.named_parameters()).keys() == {"proxies", "scale.log_scale"}
    f = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 5, 5, 2])
    value = module({"features": f}, y)
    expected = reference_proxy_nca(
        f, y.tolist(), module.proxies.detach(), module.scale().item(), True
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)
    value.backward()
    assert module.proxies.grad.abs().sum() > 0 and module.scale.log_scale.grad != 0
    with pytest.raises(ValueError, match="ProxyNCALoss needs the number of training identities"):
        ProxyNCALoss(_cfg("MODEL.LOSSES.PROXY_NCA.FEAT_DIM", 5))
