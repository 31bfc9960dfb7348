"""Triplet loss: every mining / margin / distance against a per-anchor loop; fastreid's keys."""

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from reid.config import ConfigError, InvalidArgument, get_cfg, merge_from_list
from reid.modeling.losses import TripletLoss, triplet_loss

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _dist(a: torch.Tensor, b: torch.Tensor, distance: str, normalize: bool) -> float:
    if distance == "cosine":
        return 1 - float(a @ b) / (float(a.norm()) * float(b.norm()))
    if normalize:
        a, b = a / a.norm(), b / b.norm()
    sq = float(((a - b) ** 2).sum())
    return sq if distance == "sqeuclidean" else math.sqrt(max(sq, 1e-12))  # fastreid's clamp


def _term(x: float, margin: float, soft: bool, scale: float) -> float:
    return math.log1p(math.exp(scale * x + margin)) if soft else max(x + margin, 0.0)


def _softmax(values: Sequence[float]) -> list[float]:
    m = max(values)
    e = [math.exp(v - m) for v in values]
    return [v / sum(e) for v in e]


def reference_triplet(
    f: torch.Tensor,
    y: list[int],
    margin: float,
    mining: str,
    distance: str,
    normalize: bool,
    soft: bool,
    scale: float,
    anchor_positive: bool = False,
) -> float:
    """Independent loop over anchors (and over positives and negatives for mining "all");
    ``anchor_positive`` counts each anchor among its positives (fastreid's convention)."""
    n = len(y)
    d = [[_dist(f[i], f[j], distance, normalize) for j in range(n)] for i in range(n)]
    terms: list[float] = []
    for a in range(n):
        pos = [p for p in range(n) if (p != a or anchor_positive) and y[p] == y[a]]
        neg = [q for q in range(n) if y[q] != y[a]]
        if mining == "all":
            terms += [_term(d[a][p] - d[a][q], margin, soft, scale) for p in pos for q in neg]
            continue
        if not pos or not neg:
            continue
        if mining == "batch_hard":
            d_ap, d_an = max(d[a][p] for p in pos), min(d[a][q] for q in neg)
        else:
            wp = _softmax([d[a][p] for p in pos])
            wn = _softmax([-d[a][q] for q in neg])
            d_ap = sum(w * d[a][p] for w, p in zip(wp, pos))
            d_an = sum(w * d[a][q] for w, q in zip(wn, neg))
        terms.append(_term(d_ap - d_an, margin, soft, scale))
    return sum(terms) / len(terms) if terms else 0.0


CASES: list[dict[str, Any]] = [
    dict(mining=m, distance=d, normalize=nz, soft=s)
    for m in ("batch_hard", "all", "weighted")
    for d, nz in (
        ("euclidean", False),
        ("euclidean", True),
        ("sqeuclidean", True),
        ("cosine", False),
    )
    for s in (False, True)
]


@pytest.mark.parametrize("anchor", [False, True], ids=["others", "anchor_positive"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_triplet_matches_loop_on_unequal_classes(
    make_batch: MakeBatch, case: dict[str, Any], anchor: bool
) -> None:
    f, y = make_batch([4, 1, 2, 3], dim=5)  # a singleton: with the anchor it has d_ap = d_aa
    scale = 1.7 if case["soft"] else 1.0
    value = triplet_loss(
        f,
        y,
        0.3,
        case["mining"],
        case["distance"],
        case["normalize"],
        case["soft"],
        scale,
        anchor_positive=anchor,
    )
    expected = reference_triplet(
        f,
        y.tolist(),
        0.3,
        case["mining"],
        case["distance"],
        case["normalize"],
        case["soft"],
        scale,
        anchor_positive=anchor,
    )
    assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_anchor_as_positive_changes_the_loss_as_fastreid_counts_it(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 1, 3], dim=4)
    for mining in ("all", "weighted"):
        apart = triplet_loss(f, y, 0.3, mining)
        counted = triplet_loss(f, y, 0.3, mining, anchor_positive=True)
        assert counted.item() != pytest.approx(apart.item(), rel=1e-3)
    # batch_hard: the anchor only matters for an identity with one image, which becomes an anchor
    # with d_ap = 1e-6 (the clamped self-distance) instead of being left out.
    single = torch.tensor([0, 1, 1, 2, 2])
    g = f[:5]
    expected = reference_triplet(
        g, single.tolist(), 0.3, "batch_hard", "euclidean", False, False, 1.0, True
    )
    assert triplet_loss(g, single, 0.3, anchor_positive=True).item() == pytest.approx(
        expected, rel=1e-9
    )
    assert triplet_loss(g, single, 0.3).item() != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("mining", ["weighted", "all"])
def test_triplet_gradcheck_where_smooth(make_batch: MakeBatch, mining: str) -> None:
    f, y = make_batch([2, 3, 2], dim=4)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: triplet_loss(x, y, 0.1, mining, "euclidean", soft_margin=True, scale=0.7), (f,)
    )
    assert torch.autograd.gradcheck(
        lambda x: triplet_loss(x, y, 0.2, mining, "cosine", soft_margin=True), (f,)
    )
    assert torch.autograd.gradcheck(
        lambda x: triplet_loss(x, y, 0.2, mining, "cosine", soft_margin=True, anchor_positive=True),
        (f,),
    )


def test_learnable_scale_gets_gradient(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2])
    log_s = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    triplet_loss(f, y, 0.0, "all", "cosine", soft_margin=True, scale=log_s.exp()).backward()
    assert log_s.grad is not None and log_s.grad.item() != 0.0


def test_triplet_rejects_bad_arguments(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 2])
    with pytest.raises(ValueError, match="mining must be one of"):
        triplet_loss(f, y, mining="semi_hard")
    with pytest.raises(ValueError, match="distance must be one of"):
        triplet_loss(f, y, distance="manhattan")
    with pytest.raises(ValueError, match="scale applies to the soft margin only"):
        triplet_loss(f, y, scale=2.0)
    with pytest.raises(ValueError, match="labels must be a 1-D tensor of length 4"):
        triplet_loss(f, y[:3])


def test_module_defaults_are_bag_of_tricks_batch_hard_hinge(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2, 2])
    module = TripletLoss()
    expected = reference_triplet(f, y.tolist(), 0.3, "batch_hard", "euclidean", False, False, 1.0)
    assert module({"features": f}, y).item() == pytest.approx(expected, rel=1e-9)
    # The config's defaults are fastreid's: the same loss but weighted mining (HARD_MINING False)
    from_config = TripletLoss(get_cfg())
    assert from_config.extra_repr() == module.extra_repr().replace("batch_hard", "weighted")


def test_fastreid_norm_feat_is_two_minus_two_cos(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2, 2])
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.LOSSES.TRI.NORM_FEAT", "True", "MODEL.LOSSES.TRI.MARGIN", "0.4"])
    merge_from_list(cfg, ["MODEL.LOSSES.TRI.HARD_MINING", "True"])
    module = TripletLoss(cfg)
    n = len(y)
    cos = [[float(f[i] @ f[j] / (f[i].norm() * f[j].norm())) for j in range(n)] for i in range(n)]
    terms = []
    for a in range(n):
        d_ap = max(2 - 2 * cos[a][p] for p in range(n) if p != a and y[p] == y[a])
        d_an = min(2 - 2 * cos[a][q] for q in range(n) if y[q] != y[a])
        terms.append(max(d_ap - d_an + 0.4, 0.0))
    assert module({"features": f}, y).item() == pytest.approx(sum(terms) / n, rel=1e-9)


def test_fastreid_margin_zero_means_soft_margin(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2, 2])
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.LOSSES.TRI.MARGIN", "0.0", "MODEL.LOSSES.TRI.HARD_MINING", "True"])
    module = TripletLoss(cfg)
    assert module.soft_margin
    expected = reference_triplet(f, y.tolist(), 0.0, "batch_hard", "euclidean", False, True, 1.0)
    assert module({"features": f}, y).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "opts,mining",
    [
        ([], "weighted"),  # fastreid's default, HARD_MINING False
        (["MODEL.LOSSES.TRI.HARD_MINING", "True"], "batch_hard"),
        (["MODEL.LOSSES.TRI.HARD_MINING", "False"], "weighted"),
        (["MODEL.LOSSES.TRI.MINING", "all"], "all"),
        (["MODEL.LOSSES.TRI.MINING", "all", "MODEL.LOSSES.TRI.HARD_MINING", "True"], "batch_hard"),
    ],
)
def test_fastreid_hard_mining_selects_the_mining(
    make_batch: MakeBatch, opts: list[str], mining: str
) -> None:
    f, y = make_batch([3, 2, 3])
    cfg = get_cfg()
    merge_from_list(cfg, opts)  # each command-line pair overrides the ones before it
    assert "HARD_MINING" not in cfg.MODEL.LOSSES.TRI  # MINING is the one key that decides
    module = TripletLoss(cfg)
    assert module.mining == mining and module.anchor_as_positive  # fastreid's defaults
    expected = reference_triplet(f, y.tolist(), 0.3, mining, "euclidean", False, False, 1.0, True)
    assert module({"features": f}, y).item() == pytest.approx(expected, rel=1e-9)


def test_module_cosine_soft_margin_with_learnable_scale_and_feat_key(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2])
    module = TripletLoss(
        margin=0.1,
        mining="all",
        distance="cosine",
        soft_margin=True,
        sim_scale=5.0,
        learn_scale=True,
        anchor_as_positive=False,
        feat_key="neck_features",
    ).double()
    assert [n for n, _ in module.named_parameters()] == ["scale.log_scale"]
    assert module.scale.log_scale.item() == pytest.approx(math.log(5.0))
    scale = module.scale().item()  # 5 up to the float32 rounding of log 5 at initialisation
    assert scale == pytest.approx(5.0, rel=1e-6)
    value = module({"neck_features": f, "features": f * 0}, y)
    assert value.item() == pytest.approx(
        reference_triplet(f, y.tolist(), 0.1, "all", "cosine", False, True, scale), rel=1e-9
    )
    value.backward()
    grad = module.scale.log_scale.grad
    assert grad is not None and grad.item() != 0.0


def test_module_scale_without_soft_margin_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="^learn_scale learns the soft margin's scale only"):
        TripletLoss(learn_scale=True)
    with pytest.raises(InvalidArgument, match="^sim_scale scales the soft margin only.*got 2.0"):
        TripletLoss(sim_scale=2.0)
    with pytest.raises(InvalidArgument, match="^mining must be one of"):
        TripletLoss(mining="hard")


@pytest.mark.parametrize(
    "opts,message",
    [
        (
            ["MODEL.LOSSES.TRI.NORM_FEAT", "True", "MODEL.LOSSES.TRI.DISTANCE", "cosine"],
            "MODEL.LOSSES.TRI.NORM_FEAT True .* conflicts with MODEL.LOSSES.TRI.DISTANCE 'cosine'",
        ),
        (
            ["MODEL.LOSSES.TRI.LEARN_SCALE", "True"],
            "^MODEL.LOSSES.TRI.LEARN_SCALE learns the soft margin's scale only; turn the soft "
            "margin on \\(in a config: SOFT_MARGIN True or MARGIN 0.0\\)",
        ),
    ],
)
def test_module_config_conflicts_are_errors(opts: list[str], message: str) -> None:
    cfg = get_cfg()
    merge_from_list(cfg, opts)
    with pytest.raises(ConfigError, match=message):
        TripletLoss(cfg)
