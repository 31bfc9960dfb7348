"""Classifier layers: Linear, NSL, CosFace, ArcFace, Circle (+ fastreid aliases)."""

import math

import pytest
import torch

from reid.config import ConfigError, InvalidArgument, get_cfg, load_config
from reid.modeling.layers.classifiers import (
    CLASSIFIER_REGISTRY,
    ArcFace,
    CosFace,
    Linear,
    build_classifier,
)
from reid.modeling.losses import arcface_logits, circle_logits, cosface_logits, cross_entropy_loss
from reid.utils.registry import RegistryKeyError


def _build(layer, scale=1.0, margin=0.0, learn=False, dim=5, classes=7):
    cls = CLASSIFIER_REGISTRY.get(layer)
    return cls(dim, classes, scale=scale, margin=margin, learn_scale=learn).double()


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
    assert set(out) == {"logits", "cls_weight"}
    with pytest.raises(
        InvalidArgument, match="margin is 0.3, but the Linear classifier has no margin"
    ):
        _build("Linear", margin=0.3)
    with pytest.raises(InvalidArgument, match="learn_scale applies to the cosine classifiers"):
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
        layer(f)["logits"], 14.0 * cos, rtol=1e-12
    )
    with pytest.raises(InvalidArgument, match="NSL has no margin"):
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
    assert torch.allclose(clf(f)["logits"], plain, rtol=1e-12)
    clf.eval()
    assert torch.allclose(clf(f, y)["logits"], plain, rtol=1e-12)


def test_arcface_fallback_from_the_argument_and_the_config():
    f, y = _batch()
    f[0] = -3.0 * torch.ones(5, dtype=torch.float64)  # far from every weight: theta near pi
    for fallback in ("insightface", "plain"):
        clf = ArcFace(5, 7, scale=30.0, margin=0.5, fallback=fallback).double()
        with torch.no_grad():
            clf.weight[0] = torch.ones(5, dtype=torch.float64)  # theta = pi for sample 0
        W = clf.weight.detach()
        expected = arcface_logits(f, W, y, 30.0, 0.5, fallback=fallback)
        assert torch.allclose(clf(f, y)["logits"], expected, rtol=1e-12)
        assert clf(f, y)["logits"][0, 0].item() == pytest.approx(
            -30.0 * (math.cos(0.5) if fallback == "plain" else 1 + 0.5 * math.sin(0.5))
        )
    cfg = load_config(None, ["MODEL.HEADS.CLS_LAYER", "ArcSoftmax", "MODEL.HEADS.MARGIN", 0.5])
    assert build_classifier(cfg, 5, 7).fallback == "insightface"
    cfg.MODEL.HEADS.ARCFACE.FALLBACK = "plain"
    assert build_classifier(cfg, 5, 7).fallback == "plain"
    cfg.MODEL.HEADS.ARCFACE.FALLBACK = "easy"
    with pytest.raises(
        ConfigError,
        match=r"^MODEL.HEADS.ARCFACE.FALLBACK must be one of \['insightface', 'plain'\]",
    ):
        build_classifier(cfg, 5, 7)


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


def test_argument_errors():
    with pytest.raises(InvalidArgument, match="^num_classes must be positive"):
        _build("Linear", classes=0)
    with pytest.raises(InvalidArgument, match="^margin of ArcFace is an angle in \\[0, pi\\)"):
        _build("ArcFace", margin=4.0)
    with pytest.raises(InvalidArgument, match="^scale must be positive"):
        _build("NSL", scale=0.0)


def test_config_maps_the_keys():
    cfg = load_config(
        None,
        [
            "MODEL.HEADS.CLS_LAYER",
            "CosSoftmax",
            "MODEL.HEADS.SCALE",
            30.0,
            "MODEL.HEADS.MARGIN",
            0.35,
        ],
    )
    clf = build_classifier(cfg, 5, 7)
    assert type(clf) is CosFace and clf.weight.shape == (7, 5)
    assert clf.margin == 0.35 and clf.logit_scale() == 30.0
    cfg.MODEL.HEADS.CLS_LAYER = "ArcFace"
    cfg.MODEL.HEADS.LEARN_SCALE = True
    arc = build_classifier(cfg, 5, 7)
    assert type(arc) is ArcFace and arc.logit_scale.learnable
    linear = Linear(get_cfg(), 5, 7)  # the class itself reads the config too
    assert linear.scale == 1.0 and linear.weight.shape == (7, 5)


def test_config_errors_name_the_keys():
    with pytest.raises(RegistryKeyError, match="MODEL.HEADS.CLS_LAYER: No object named 'Arcface'"):
        build_classifier(load_config(None, ["MODEL.HEADS.CLS_LAYER", "Arcface"]), 5, 7)
    with pytest.raises(
        ConfigError, match="^MODEL.HEADS.MARGIN is 0.3, but the Linear classifier has no margin"
    ):
        build_classifier(load_config(None, ["MODEL.HEADS.MARGIN", 0.3]), 5, 7)
    with pytest.raises(ConfigError, match="^MODEL.HEADS.LEARN_SCALE applies to the cosine"):
        build_classifier(load_config(None, ["MODEL.HEADS.LEARN_SCALE", True]), 5, 7)
    cfg = load_config(None, ["MODEL.HEADS.CLS_LAYER", "ArcFace", "MODEL.HEADS.MARGIN", 4.0])
    with pytest.raises(ConfigError, match="^MODEL.HEADS.MARGIN of ArcFace is an angle"):
        build_classifier(cfg, 5, 7)
    cfg = load_config(None, ["MODEL.HEADS.CLS_LAYER", "NSL", "MODEL.HEADS.SCALE", 0.0])
    with pytest.raises(ConfigError, match="^MODEL.HEADS.SCALE must be positive"):
        build_classifier(cfg, 5, 7)
