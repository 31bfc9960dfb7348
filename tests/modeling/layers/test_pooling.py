import pytest
import torch

from reid.modeling.layers import POOLING_REGISTRY, build_pooling
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
    avg = build_pooling("GlobalAvgPool")(fmap)
    mx = build_pooling("GlobalMaxPool")(fmap)
    both = build_pooling("AdaptiveAvgMaxPool")(fmap)
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
    torch.testing.assert_close(build_pooling("FastGlobalAvgPool")(fmap), avg)


def test_gem_matches_loop_and_clamps_negative_values(fmap):
    gem = build_pooling("GeneralizedMeanPooling", p=3.0)
    assert list(gem.parameters()) == []
    torch.testing.assert_close(gem(fmap).flatten(1), _loop_gem(fmap, 3.0))
    torch.testing.assert_close(
        build_pooling("GeneralizedMeanPooling", p=2.5)(fmap).flatten(1), _loop_gem(fmap, 2.5)
    )
    positive = fmap.abs() + 0.1
    torch.testing.assert_close(
        build_pooling("GeneralizedMeanPooling", p=1.0)(positive),
        build_pooling("GlobalAvgPool")(positive),
    )


def test_learnable_gem_p_is_a_parameter_with_gradient(fmap):
    gem = build_pooling("GeneralizedMeanPoolingP", p=3.0).double()
    assert [name for name, _ in gem.named_parameters()] == ["p"]
    assert gem.p.item() == 3.0
    x = fmap.abs() + 0.1
    torch.testing.assert_close(gem(x).flatten(1), _loop_gem(x, 3.0))
    gem(x).sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0
    assert "p" in gem.state_dict()


def test_pooling_errors():
    with pytest.raises(RegistryKeyError, match="GeneralizedMeanPoolingP"):
        build_pooling("GemPool")
    with pytest.raises(ValueError, match="GEM_P must be positive"):
        build_pooling("GeneralizedMeanPooling", p=0.0)
    assert {
        "GlobalAvgPool",
        "GlobalMaxPool",
        "GeneralizedMeanPooling",
        "GeneralizedMeanPoolingP",
        "AdaptiveAvgMaxPool",
    } <= set(POOLING_REGISTRY.names())
