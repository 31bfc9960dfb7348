"""Circle-based ratio loss against a per-class loop, and the RatioLoss module."""

import math
from collections.abc import Callable

import pytest
import torch

from reid.config import InvalidArgument
from reid.modeling.losses import RatioLoss, ratio_loss

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _distance(c: float, kind: str) -> float:
    if kind == "cosine":
        return 1 - c
    if kind == "chord":
        return math.sqrt(2 - 2 * c)
    return math.acos(c)


def reference_ratio(f: torch.Tensor, y: list[int], W: torch.Tensor, eps: float, kind: str) -> float:
    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    terms = []
    for j in sorted(set(y)):
        d = max(_distance(cos(f[i], W[j]), kind) for i in range(len(y)) if y[i] == j)
        D = min(_distance(cos(W[k], W[j]), kind) for k in range(W.shape[0]) if k != j)
        terms.append(d / (D + eps))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("kind", ["cosine", "chord", "angle"])
def test_ratio_matches_class_loop_with_all_classes_in_the_minimum(
    make_batch: MakeBatch, kind: str
) -> None:
    f, y = make_batch([3, 1, 2], dim=4, contiguous=True)
    W = torch.randn(
        6, 4, dtype=torch.float64
    )  # classes 3..5 are absent from the batch but enter D_j
    value = ratio_loss(f, y, W, eps=0.5, distance=kind)
    assert value.item() == pytest.approx(reference_ratio(f, y.tolist(), W, 0.5, kind), rel=1e-9)


@pytest.mark.parametrize("kind", ["cosine", "chord"])
def test_ratio_all_classes_divides_the_sum_by_the_number_of_training_classes(
    make_batch: MakeBatch, kind: str
) -> None:
    f, y = make_batch([3, 1, 2], dim=4, contiguous=True)
    W = torch.randn(47, 4, dtype=torch.float64)  # 44 of the 47 classes are absent from the batch
    batch_mean = reference_ratio(f, y.tolist(), W, 0.5, kind)  # the mean over the 3 classes
    value = ratio_loss(f, y, W, 0.5, kind, average_over="all_classes")
    assert value.item() == pytest.approx(batch_mean * 3 / 47, rel=1e-9)
    default = ratio_loss(f, y, W, 0.5, kind)
    assert default.item() == pytest.approx(batch_mean, rel=1e-9)
    module = RatioLoss(distance=kind, average_over="all_classes")
    outputs = {"neck_features": f, "cls_weight": W}
    assert module(outputs, y).item() == pytest.approx(value.item(), rel=1e-12)
    with pytest.raises(InvalidArgument, match=r"^average_over must be one of"):
        RatioLoss(average_over="batch")


def test_ratio_is_invariant_to_batch_order_and_feature_scale(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 2, 2], dim=4, contiguous=True)
    W = torch.randn(4, 4, dtype=torch.float64)
    perm = torch.randperm(len(y))
    base = ratio_loss(f, y, W)
    assert ratio_loss(f[perm] * 3.0, y[perm], W * 0.5).item() == pytest.approx(
        base.item(), rel=1e-12
    )


def test_ratio_gradcheck(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 1, 3], dim=3, contiguous=True)
    W = torch.randn(4, 3, dtype=torch.float64)
    f.requires_grad_(True)
    W.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ratio_loss(a, y, b, 0.5, "cosine"), (f, W))


def test_ratio_errors() -> None:
    f = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least 2 classes"):
        ratio_loss(f, torch.zeros(3, dtype=torch.int64), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ratio_loss(f, torch.tensor([0, 1, 2]), torch.randn(2, 4))
    with pytest.raises(ValueError, match="distance must be one of"):
        ratio_loss(f, torch.tensor([0, 1, 1]), torch.randn(2, 4), distance="euclidean")


def test_ratio_module_reads_features_and_classifier_weights() -> None:
    module = RatioLoss(eps=0.2, distance="chord")
    assert module.feat_key == "neck_features" and RatioLoss.log_name == "loss_ratio"
    f = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 2, 2, 1])
    W = torch.randn(3, 4, dtype=torch.float64)
    value = module({"neck_features": f, "cls_weight": W}, y)
    assert value.item() == pytest.approx(reference_ratio(f, y.tolist(), W, 0.2, "chord"), rel=1e-9)
    with pytest.raises(KeyError, match="RatioLoss reads 'cls_weight' from the model outputs"):
        module({"neck_features": f}, y)
    with pytest.raises(InvalidArgument, match="^eps must be >= 0, got -0.5"):
        RatioLoss(eps=-0.5)
