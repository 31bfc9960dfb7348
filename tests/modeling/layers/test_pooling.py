import pytest
import torch

from reid.config import ConfigError, InvalidArgument, get_cfg
from reid.modeling.layers import POOLING_REGISTRY, build_pooling
from reid.modeling.layers.pooling import (
    AdaptiveAvgMaxPool,
    GeneralizedMeanPooling,
    GeneralizedMeanPoolingP,
    GlobalAvgPool,
    GlobalMaxPool,
)
from reid.utils.registry import RegistryKeyError


def _loop_gem(x: torch.Tensor, p: float, eps: float = 1e-6) -> torch.Tensor:
    out = torch.empty(x.shape[0], x.shape[1], dtype=x.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            values = [max(float(v), eps) ** p for v in x[n, c].flatten()]
            out[n, c] = (sum(values) / len(values)) ** (1.0 / p)
    return out


@pytest.fixture
def fmap() -> torch.Tensor:
    return torch.randn(3, 4, 5, 2, dtype=torch.float64)


def test_average_max_and_avgmax_pooling_match_direct_computation(fmap):
    avg = GlobalAvgPool()(fmap)
    mx = GlobalMaxPool()(fmap)
    both = AdaptiveAvgMaxPool()(fmap)
    assert avg.shape == mx.shape == both.shape == (3, 4, 1, 1)
    expected_avg = torch.tensor(
        [[sum(fmap[n, c].flatten().tolist()) / 10 for c in range(4)] for n in range(3)],
        dtype=torch.float64,
    )
    expected_max = torch.tensor(
        [[max(fmap[n, c].flatten().tolist()) for c in range(4)] for n in range(3)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(avg.flatten(1), expected_avg)
    torch.testing.assert_close(mx.flatten(1), expected_max)
    torch.testing.assert_close(both.flatten(1), expected_avg + expected_max)
    torch.testing.assert_close(POOLING_REGISTRY.get("FastGlobalAvgPool")()(fmap), avg)


def test_gem_matches_loop_and_clamps_negative_values(fmap):
    gem = GeneralizedMeanPooling(p=3.0)
    assert list(gem.parameters()) == []
    torch.testing.assert_close(gem(fmap).flatten(1), _loop_gem(fmap, 3.0))
    torch.testing.assert_close(GeneralizedMeanPooling(p=2.5)(fmap).flatten(1), _loop_gem(fmap, 2.5))
    positive = fmap.abs() + 0.1
    torch.testing.assert_close(
        GeneralizedMeanPooling(p=1.0)(positive),
        GlobalAvgPool()(positive),
    )


def test_learnable_gem_p_is_a_parameter_with_gradient(fmap):
    gem = GeneralizedMeanPoolingP(p=3.0).double()
    assert [name for name, _ in gem.named_parameters()] == ["p"]
    assert gem.p.item() == 3.0
    x = fmap.abs() + 0.1
    torch.testing.assert_close(gem(x).flatten(1), _loop_gem(x, 3.0))
    gem(x).sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0
    assert "p" in gem.state_dict()


def test_config_names_the_layer_and_its_power():
    cfg = get_cfg()
    assert type(build_pooling(cfg)) is GlobalAvgPool  # the default POOL_LAYER
    cfg.MODEL.HEADS.POOL_LAYER = "GeneralizedMeanPoolingP"
    cfg.MODEL.HEADS.GEM_P = 4.0
    gem = build_pooling(cfg)
    assert type(gem) is GeneralizedMeanPoolingP and gem.p.item() == 4.0
    cfg.MODEL.HEADS.POOL_LAYER = "GeneralizedMeanPooling"
    assert build_pooling(cfg).p == 4.0


def test_pooling_errors():
    with pytest.raises(InvalidArgument, match="^p must be positive, got 0.0"):
        GeneralizedMeanPooling(p=0.0)
    cfg = get_cfg()
    cfg.MODEL.HEADS.POOL_LAYER = "GemPool"
    with pytest.raises(RegistryKeyError, match="MODEL.HEADS.POOL_LAYER: .*GeneralizedMeanPoolingP"):
        build_pooling(cfg)
    cfg.MODEL.HEADS.POOL_LAYER = "GeneralizedMeanPooling"
    cfg.MODEL.HEADS.GEM_P = 0.0
    with pytest.raises(ConfigError, match="^MODEL.HEADS.GEM_P must be positive, got 0.0"):
        build_pooling(cfg)
    cfg.MODEL.HEADS.POOL_LAYER, cfg.MODEL.HEADS.GEM_P = "GlobalAvgPool", 4.0
    with pytest.raises(
        ConfigError,
        match=r"^MODEL.HEADS.GEM_P is 4.0, but GlobalAvgPool \(MODEL.HEADS.POOL_LAYER\) has no "
        r"power p",
    ):
        build_pooling(cfg)
    assert {
        "GlobalAvgPool",
        "GlobalMaxPool",
        "GeneralizedMeanPooling",
        "GeneralizedMeanPoolingP",
        "AdaptiveAvgMaxPool",
    } <= set(POOLING_REGISTRY.names())
