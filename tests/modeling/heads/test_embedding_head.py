import functools

import pytest
import torch
from torch import nn

from reid.config import ConfigError, InvalidArgument, get_cfg, load_config
from reid.modeling.heads import HEAD_REGISTRY, EmbeddingHead, build_heads
from reid.modeling.layers import FrozenBatchNorm
from reid.modeling.layers.classifiers import CosFace
from reid.modeling.layers.pooling import (
    AdaptiveAvgMaxPool,
    GeneralizedMeanPooling,
    GeneralizedMeanPoolingP,
    GlobalMaxPool,
)
from reid.utils.registry import RegistryKeyError

C_IN, N_CLASSES = 8, 5


def _fmap() -> torch.Tensor:
    return torch.randn(4, C_IN, 4, 2, dtype=torch.float64) + 0.5


def _bn_train(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def test_training_outputs_match_direct_computation():
    head = EmbeddingHead(C_IN, N_CLASSES).double().train()
    x, targets = _fmap(), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        head.bottleneck.weight.uniform_(0.5, 1.5)
        head.bottleneck.bias.uniform_(-0.5, 0.5)
    out = head(x, targets)
    assert set(out) == {"features", "neck_features", "logits", "cls_weight"}
    pooled = torch.stack([torch.stack([x[n, c].mean() for c in range(C_IN)]) for n in range(4)])
    torch.testing.assert_close(out["features"], pooled)
    neck = _bn_train(pooled, head.bottleneck.weight.detach(), head.bottleneck.bias.detach())
    torch.testing.assert_close(out["neck_features"], neck)
    assert out["cls_weight"] is head.classifier.weight and out["cls_weight"].shape == (
        N_CLASSES,
        C_IN,
    )
    torch.testing.assert_close(out["logits"], neck @ head.classifier.weight.detach().T)


def test_bn_neck_bias_is_frozen():
    head = EmbeddingHead(C_IN, N_CLASSES).double().train()
    assert head.bottleneck.weight.requires_grad and not head.bottleneck.bias.requires_grad
    out = head(_fmap(), torch.tensor([0, 1, 2, 3]))
    out["logits"].sum().backward()
    assert head.bottleneck.bias.grad is None and head.bottleneck.weight.grad is not None
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert trainable == {"bottleneck.weight", "classifier.weight"}


@pytest.mark.parametrize("neck_feat", ["before", "after"])
def test_neck_feat_selects_the_metric_feature_and_testing_uses_the_neck(neck_feat):
    head = EmbeddingHead(C_IN, N_CLASSES, neck_feat=neck_feat).double()
    head.train()
    x = _fmap()
    out = head(x, torch.tensor([0, 1, 2, 3]))
    pooled = x.mean(dim=(2, 3))
    torch.testing.assert_close(
        out["features"], pooled if neck_feat == "before" else out["neck_features"]
    )
    for _ in range(3):
        head(_fmap() * 2, torch.tensor([0, 1, 2, 3]))  # move the running statistics
    head.eval()
    feat = head(x)
    bn = head.bottleneck
    after = (pooled - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(feat, after.detach())


def test_reduction_layer_and_no_bnneck():
    head = EmbeddingHead(C_IN, N_CLASSES, embedding_dim=3, with_bnneck=False).double().train()
    x = _fmap()
    out = head(x, torch.tensor([0, 1, 2, 3]))
    reduced = x.mean(dim=(2, 3)) @ head.reduction.weight.detach().flatten(1).T
    assert out["features"].shape == (4, 3) and head.classifier.weight.shape == (N_CLASSES, 3)
    torch.testing.assert_close(out["features"], reduced)
    torch.testing.assert_close(out["neck_features"], reduced)
    assert head.reduction.weight.shape == (3, C_IN, 1, 1) and head.out_dim == 3


@pytest.mark.parametrize(
    "pool, reference",
    [
        (GlobalMaxPool, lambda x: x.amax(dim=(2, 3))),
        (AdaptiveAvgMaxPool, lambda x: x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))),
        (GeneralizedMeanPooling, lambda x: x.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)),
    ],
)
def test_pool_layer_choice(pool, reference):
    head = EmbeddingHead(C_IN, N_CLASSES, pooling=pool()).double().train()
    x = _fmap()
    torch.testing.assert_close(head(x, torch.tensor([0, 1, 2, 3]))["features"], reference(x))


def test_learnable_gem_trains_p():
    head = EmbeddingHead(C_IN, N_CLASSES, pooling=GeneralizedMeanPoolingP(p=4.0)).double().train()
    assert head.pool_layer.p.item() == 4.0
    out = head(_fmap().abs(), torch.tensor([0, 1, 2, 3]))
    (out["logits"].sum() + out["features"].sum()).backward()
    assert head.pool_layer.p.grad is not None


def test_classifier_factory():
    head = EmbeddingHead(C_IN, N_CLASSES, classifier=functools.partial(CosFace, scale=16.0))
    assert type(head.classifier) is CosFace and head.classifier.weight.shape == (N_CLASSES, C_IN)
    assert head.classifier.logit_scale() == 16.0


def test_argument_errors():
    with pytest.raises(InvalidArgument, match="^neck_feat must be 'before' or 'after', got 'mid'"):
        EmbeddingHead(C_IN, N_CLASSES, neck_feat="mid")
    with pytest.raises(InvalidArgument, match="^num_classes must be positive"):
        EmbeddingHead(C_IN, 0)
    with pytest.raises(InvalidArgument, match=r"^embedding_dim must be >= 0 \(0 = no reduction"):
        EmbeddingHead(C_IN, N_CLASSES, embedding_dim=-1)
    with pytest.raises(InvalidArgument, match="^in_channels must be positive"):
        EmbeddingHead(0, N_CLASSES)


def test_config_maps_the_keys():
    keys = {
        "NUM_CLASSES": N_CLASSES,
        "EMBEDDING_DIM": 3,
        "WITH_BNNECK": False,
        "NECK_FEAT": "after",
        "POOL_LAYER": "GeneralizedMeanPoolingP",
        "GEM_P": 4.0,
        "CLS_LAYER": "CosFace",
        "SCALE": 16.0,
        "MARGIN": 0.2,
    }
    cfg = load_config(None, [x for k, v in keys.items() for x in (f"MODEL.HEADS.{k}", v)])
    head = build_heads(cfg, C_IN)
    assert type(head) is EmbeddingHead and head.out_dim == 3 and head.neck_feat == "after"
    assert head.reduction.weight.shape == (3, C_IN, 1, 1) and type(head.bottleneck) is nn.Identity
    assert type(head.pool_layer) is GeneralizedMeanPoolingP and head.pool_layer.p.item() == 4.0
    assert type(head.classifier) is CosFace and head.classifier.weight.shape == (N_CLASSES, 3)
    assert head.classifier.margin == 0.2 and head.classifier.logit_scale() == 16.0
    cfg = load_config(None, ["MODEL.HEADS.NUM_CLASSES", N_CLASSES, "MODEL.HEADS.NORM", "FrozenBN"])
    assert type(EmbeddingHead(cfg, C_IN).bottleneck) is nn.Identity  # fastreid: no neck default
    cfg = load_config(
        None,
        ["MODEL.HEADS.NUM_CLASSES", N_CLASSES, "MODEL.HEADS.NORM", "FrozenBN"]
        + ["MODEL.HEADS.WITH_BNNECK", "True"],
    )
    assert type(EmbeddingHead(cfg, C_IN).bottleneck) is FrozenBatchNorm


def test_config_errors_name_the_keys():
    cfg = get_cfg()
    cfg.MODEL.HEADS.NUM_CLASSES = N_CLASSES
    cfg.MODEL.HEADS.NECK_FEAT = "middle"
    with pytest.raises(
        ConfigError, match="^MODEL.HEADS.NECK_FEAT must be 'before' or 'after', got 'middle'"
    ):
        build_heads(cfg, C_IN)
    cfg.MODEL.HEADS.NECK_FEAT = "before"
    cfg.MODEL.HEADS.NUM_CLASSES = 0
    with pytest.raises(ConfigError, match="^MODEL.HEADS.NUM_CLASSES must be positive"):
        build_heads(cfg, C_IN)
    cfg.MODEL.HEADS.NUM_CLASSES = N_CLASSES
    cfg.MODEL.HEADS.NAME = "BNNeckHead"
    with pytest.raises(
        RegistryKeyError, match="MODEL.HEADS.NAME: .*EmbeddingHead, RatioHead, UnifiedHead"
    ):
        build_heads(cfg, C_IN)
    cfg.MODEL.HEADS.NAME = "EmbeddingHead"
    assert build_heads(cfg).classifier.weight.shape == (N_CLASSES, 2048)  # fastreid's FEAT_DIM
    cfg.MODEL.BACKBONE.FEAT_DIM = 0
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.FEAT_DIM"):
        build_heads(cfg)
    cfg.MODEL.BACKBONE.FEAT_DIM = C_IN
    assert build_heads(cfg).classifier.weight.shape == (N_CLASSES, C_IN)
    assert {"EmbeddingHead", "RatioHead", "UnifiedHead"} <= set(HEAD_REGISTRY.names())
