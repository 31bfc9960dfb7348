import pytest
import torch

from reid.config import get_cfg
from reid.modeling.heads import HEAD_REGISTRY, EmbeddingHead, build_heads
from reid.utils.registry import RegistryKeyError

C_IN, N_CLASSES = 8, 5


def _cfg(**heads):
    cfg = get_cfg()
    cfg.MODEL.HEADS.NUM_CLASSES = N_CLASSES
    for key, value in heads.items():
        cfg.MODEL.HEADS[key] = value
    return cfg


def _fmap() -> torch.Tensor:
    return torch.randn(4, C_IN, 4, 2, dtype=torch.float64) + 0.5


def _bn_train(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def test_training_outputs_match_direct_computation():
    head = build_heads(_cfg(), C_IN).double().train()
    assert isinstance(head, EmbeddingHead)
    x, targets = _fmap(), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        head.bottleneck.weight.uniform_(0.5, 1.5)
        head.bottleneck.bias.uniform_(-0.5, 0.5)
    out = head(x, targets)
    assert set(out) >= {"features", "neck_features", "logits", "pred_logits", "cls_weight"}
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
    head = build_heads(_cfg(), C_IN).double().train()
    assert head.bottleneck.weight.requires_grad and not head.bottleneck.bias.requires_grad
    out = head(_fmap(), torch.tensor([0, 1, 2, 3]))
    out["logits"].sum().backward()
    assert head.bottleneck.bias.grad is None and head.bottleneck.weight.grad is not None
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    assert trainable == {"bottleneck.weight", "classifier.weight"}


@pytest.mark.parametrize("neck_feat", ["before", "after"])
def test_neck_feat_selects_the_metric_feature_and_testing_uses_the_neck(neck_feat):
    head = build_heads(_cfg(NECK_FEAT=neck_feat), C_IN).double()
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
    head = build_heads(_cfg(EMBEDDING_DIM=3, WITH_BNNECK=False), C_IN).double().train()
    x = _fmap()
    out = head(x, torch.tensor([0, 1, 2, 3]))
    reduced = x.mean(dim=(2, 3)) @ head.reduction.weight.detach().flatten(1).T
    assert out["features"].shape == (4, 3) and head.classifier.weight.shape == (N_CLASSES, 3)
    torch.testing.assert_close(out["features"], reduced)
    torch.testing.assert_close(out["neck_features"], reduced)
    assert head.reduction.weight.shape == (3, C_IN, 1, 1)


@pytest.mark.parametrize(
    "pool, reference",
    [
        ("GlobalMaxPool", lambda x: x.amax(dim=(2, 3))),
        ("AdaptiveAvgMaxPool", lambda x: x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))),
        ("GeneralizedMeanPooling", lambda x: x.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)),
    ],
)
def test_pool_layer_choice(pool, reference):
    head = build_heads(_cfg(POOL_LAYER=pool), C_IN).double().train()
    x = _fmap()
    torch.testing.assert_close(head(x, torch.tensor([0, 1, 2, 3]))["features"], reference(x))


def test_learnable_gem_trains_p():
    head = build_heads(_cfg(POOL_LAYER="GeneralizedMeanPoolingP", GEM_P=4.0), C_IN).double().train()
    assert head.pool_layer.p.item() == 4.0
    out = head(_fmap().abs(), torch.tensor([0, 1, 2, 3]))
    (out["logits"].sum() + out["features"].sum()).backward()
    assert head.pool_layer.p.grad is not None


def test_head_errors():
    with pytest.raises(ValueError, match="NECK_FEAT must be 'before' or 'after', got 'middle'"):
        build_heads(_cfg(NECK_FEAT="middle"), C_IN)
    with pytest.raises(ValueError, match="NUM_CLASSES must be positive"):
        build_heads(_cfg(NUM_CLASSES=0), C_IN)
    with pytest.raises(RegistryKeyError, match="EmbeddingHead, RatioHead, UnifiedHead"):
        build_heads(_cfg(NAME="BNNeckHead"), C_IN)
    with pytest.raises(ValueError, match="MODEL.BACKBONE.FEAT_DIM"):
        build_heads(_cfg())
    cfg = _cfg()
    cfg.MODEL.BACKBONE.FEAT_DIM = C_IN
    assert build_heads(cfg).classifier.weight.shape == (N_CLASSES, C_IN)
    assert {"EmbeddingHead", "RatioHead", "UnifiedHead"} <= set(HEAD_REGISTRY.names())
