"""The ratio-loss paper's head and the unified-view paper's head."""

import functools

import pytest
import torch
import torch.nn.functional as F

from reid.config import ConfigError, InvalidArgument, load_config
from reid.modeling.heads import RatioHead, UnifiedHead, build_heads
from reid.modeling.layers.classifiers import NSL

C_IN, N_CLASSES = 16, 6


def _fmap() -> torch.Tensor:
    return torch.randn(4, C_IN, 4, 2, dtype=torch.float64)


def _bn_eval(x: torch.Tensor, bn) -> torch.Tensor:
    return (
        (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    ).detach()


def _warm(head, scale: float = 3.0) -> None:
    head.train()
    for _ in range(3):
        head(_fmap() * scale + 1, torch.tensor([0, 1, 2, 3]))
    head.eval()


def test_ratio_head_defaults_to_the_papers_1024_normalised_feature():
    head = RatioHead(C_IN, N_CLASSES).double()
    assert head.out_dim == 1024
    assert head.classifier.weight.shape == (N_CLASSES, 1024)
    assert head.reduction.bias is None
    _warm(head)
    x = _fmap()
    feat = head(x)
    pooled = _bn_eval(x.mean(dim=(2, 3)), head.pool_norm)
    embedding = _bn_eval(pooled @ head.reduction.weight.flatten(1).T, head.embedding_norm)
    torch.testing.assert_close(feat, F.normalize(embedding, dim=1))
    torch.testing.assert_close(feat.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_ratio_head_training_outputs_with_the_cosine_classifier():
    nsl = functools.partial(NSL, scale=14.0)
    head = RatioHead(C_IN, N_CLASSES, embedding_dim=8, classifier=nsl).double().train()
    out = head(_fmap(), torch.tensor([0, 1, 2, 3]))
    assert out["features"].shape == out["neck_features"].shape == (4, 8)
    torch.testing.assert_close(out["neck_features"], F.normalize(out["features"], dim=1))
    weight = out["cls_weight"].detach()
    expected = 14.0 * out["neck_features"] @ F.normalize(weight, dim=1).T
    torch.testing.assert_close(out["logits"], expected)
    out["logits"].sum().backward()
    assert head.reduction.weight.grad is not None and head.pool_norm.weight.grad is not None


def test_unified_head_feature_is_the_reduced_batch_normalised_vector():
    head = UnifiedHead(C_IN, N_CLASSES).double()
    assert head.out_dim == 1024
    head.train()
    out = head(_fmap(), torch.tensor([0, 1, 2, 3]))
    assert out["features"] is out["neck_features"] and out["features"].shape == (4, 1024)
    assert head.embedding_norm.bias.requires_grad
    small = UnifiedHead(C_IN, N_CLASSES, embedding_dim=12).double()
    _warm(small)
    x = _fmap()
    expected = _bn_eval(
        x.mean(dim=(2, 3)) @ small.reduction.weight.flatten(1).T, small.embedding_norm
    )
    feat = small(x)
    torch.testing.assert_close(feat, expected)
    assert not torch.allclose(feat.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_embedding_dim_errors():
    with pytest.raises(InvalidArgument, match=r"^embedding_dim must be >= 0 \(0 = 1024\), got -8"):
        RatioHead(C_IN, N_CLASSES, embedding_dim=-8)
    with pytest.raises(InvalidArgument, match=r"^embedding_dim must be >= 0 \(0 = 1024\)"):
        UnifiedHead(C_IN, N_CLASSES, embedding_dim=-1)


def test_config_builds_the_paper_heads():
    opts = ["MODEL.HEADS.NUM_CLASSES", N_CLASSES, "MODEL.HEADS.EMBEDDING_DIM", 8]
    opts += ["MODEL.HEADS.NAME", "RatioHead", "MODEL.HEADS.CLS_LAYER", "NSL"]
    ratio = build_heads(load_config(None, opts + ["MODEL.HEADS.SCALE", 14.0]), C_IN)
    assert type(ratio) is RatioHead and ratio.out_dim == 8
    assert type(ratio.classifier) is NSL and ratio.classifier.logit_scale() == 14.0
    unified = build_heads(load_config(None, opts + ["MODEL.HEADS.NAME", "UnifiedHead"]), C_IN)
    assert type(unified) is UnifiedHead and unified.classifier.weight.shape == (N_CLASSES, 8)
    with pytest.raises(ConfigError, match="^MODEL.HEADS.EMBEDDING_DIM must be >= 0"):
        build_heads(load_config(None, opts + ["MODEL.HEADS.EMBEDDING_DIM", -1]), C_IN)


@pytest.mark.parametrize("head", ["RatioHead", "UnifiedHead"])
@pytest.mark.parametrize("key, value", [("WITH_BNNECK", "True"), ("NECK_FEAT", "after")])
def test_a_key_the_paper_heads_cannot_honour_is_an_error(head, key, value):
    opts = ["MODEL.HEADS.NUM_CLASSES", N_CLASSES, "MODEL.HEADS.NAME", head]
    build_heads(load_config(None, opts), C_IN)  # the keys at their defaults: no option asked for
    with pytest.raises(
        ConfigError,
        match=rf"^MODEL.HEADS.{key} is '?{value}'?, which {head} cannot honour: .*; leave it at "
        r".* \(the key is EmbeddingHead's\)",
    ):
        build_heads(load_config(None, opts + [f"MODEL.HEADS.{key}", value]), C_IN)
