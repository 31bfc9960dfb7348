"""Classifier layers: Linear, NSL, CosFace, ArcFace, Circle (+ fastreid aliases), built from MODEL.HEADS."""

import math

import pytest
import torch

from reid.config import get_cfg
from reid.config.config import merge_from_list
from reid.modeling.layers.classifiers import CLASSIFIER_REGISTRY, build_classifier
from reid.modeling.losses import arcface_logits, circle_logits, cosface_logits, cross_entropy_loss
from reid.utils.registry import RegistryKeyError


def _cfg(*opts):
    cfg = get_cfg()
    merge_from_list(cfg, list(opts))
    return cfg


def _build(layer, scale=1.0, margin=0.0, learn=False, dim=5, classes=7):
    cfg = _cfg(
        "MODEL.HEADS.CLS_LAYER",
        layer,
        "MODEL.HEADS.SCALE",
        scale,
        "MODEL.HEADS.MARGIN",
        margin,
        "MODEL.HEADS.LEARN_SCALE",
        learn,
    )
    return build_classifier(cfg, dim, classes).double()


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 5, generator=g, dtype=torch.float64), torch.tensor([0, 6, 3, 3])


def test_registered_names_and_fastreid_aliases():
    assert set(CLASSIFIER_REGISTRY.names()) == {
        "Linear",
        "NSL",
        "CosFace",
        "ArcFace",
        "Circle",
        "CosSoftmax",
        "ArcSoftmax",
        "CircleSoftmax",
    }
    for alias, name in (
        ("CosSoftmax", "CosFace"),
        ("ArcSoftmax", "ArcFace"),
        ("CircleSoftmax", "Circle"),
    ):
        assert CLASSIFIER_REGISTRY.get(alias) is CLASSIFIER_REGISTRY.get(name)


def test_linear_is_scaled_inner_product_without_margin():
    layer = _build("Linear", scale=2.0)
    f, y = _batch()
    out = layer(f, y)
    assert out["cls_weight"] is layer.weight
    assert torch.allclose(out["logits"], 2.0 * f @ layer.weight.t(), rtol=1e-12)
    assert torch.equal(out["logits"], out["pred_logits"])
    with pytest.raises(
        ValueError, match="MODEL.HEADS.MARGIN is 0.3, but the Linear classifier has no margin"
    ):
        _build("Linear", margin=0.3)
    with pytest.raises(ValueError, match="LEARN_SCALE applies to the cosine classifiers"):
        _build("Linear", learn=True)


def test_nsl_is_scaled_cosine_in_training_and_eval():
    layer = _build("NSL", scale=14.0)
    f, y = _batch()
    cos = torch.tensor(
        [
            [float(f[i] @ w) / float(f[i].norm() * w.norm()) for w in layer.weight.detach()]
            for i in range(4)
        ],
        dtype=torch.float64,
    )
    out = layer(f, y)
    assert torch.allclose(out["logits"], 14.0 * cos, rtol=1e-12) and torch.allclose(
        out["pred_logits"], 14.0 * cos, rtol=1e-12
    )
    with pytest.raises(ValueError, match="NSL has no margin"):
        _build("NSL", margin=0.1)


@pytest.mark.parametrize(
    "layer,fn,margin",
    [
        ("CosFace", cosface_logits, 0.35),
        ("ArcSoftmax", arcface_logits, 0.5),
        ("CircleSoftmax", circle_logits, 0.25),
    ],
)
def test_margin_applies_only_in_training_with_targets(layer, fn, margin):
    clf = _build(layer, scale=30.0, margin=margin)
    f, y = _batch()
    out = clf(f, y)
    W = clf.weight.detach()
    assert torch.allclose(out["logits"], fn(f, W, y, 30.0, margin), rtol=1e-12)
    plain = (
        30.0 * torch.nn.functional.normalize(f, dim=1) @ torch.nn.functional.normalize(W, dim=1).t()
    )
    assert torch.allclose(out["pred_logits"], plain, rtol=1e-12)
    assert torch.allclose(clf(f)["logits"], plain, rtol=1e-12)
    clf.eval()
    assert torch.allclose(clf(f, y)["logits"], plain, rtol=1e-12)


def test_learnable_scale_is_a_log_parameter_that_trains():
    clf = _build("ArcFace", scale=16.0, margin=0.2, learn=True)
    assert clf.logit_scale.log_scale.item() == pytest.approx(math.log(16.0), rel=1e-6)
    assert {n for n, _ in clf.named_parameters()} == {"weight", "logit_scale.log_scale"}
    f, y = _batch()
    cross_entropy_loss(clf(f, y)["logits"], y).backward()
    assert clf.logit_scale.log_scale.grad.item() != 0.0
    assert {n for n, _ in _build("ArcFace", scale=16.0).named_parameters()} == {"weight"}


def test_cosface_classifier_gradcheck():
    clf = _build("CosFace", scale=4.0, margin=0.3)
    f, y = _batch()
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: cross_entropy_loss(clf(x, y)["logits"], y), (f,))


def test_build_errors_name_the_keys():
    with pytest.raises(ValueError, match="MODEL.HEADS.NUM_CLASSES must be positive"):
        build_classifier(get_cfg(), 5, 0)
    with pytest.raises(RegistryKeyError, match="MODEL.HEADS.CLS_LAYER: No object named 'Arcface'"):
        _build("Arcface")
    with pytest.raises(ValueError, match="angle in \\[0, pi\\)"):
        _build("ArcFace", margin=4.0)
    with pytest.raises(ValueError, match="MODEL.HEADS.SCALE must be positive"):
        _build("NSL", scale=0.0)
