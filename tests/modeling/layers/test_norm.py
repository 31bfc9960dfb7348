import pytest
import torch
from torch import nn

from reid.modeling.layers import NORM_REGISTRY, FrozenBatchNorm, get_norm
from reid.utils.registry import RegistryKeyError


def test_norm_names_build_the_right_layers():
    assert type(get_norm("BN", 64)) is nn.BatchNorm2d
    assert type(get_norm("syncBN", 64)) is nn.SyncBatchNorm
    assert type(get_norm("FrozenBN", 64)) is FrozenBatchNorm
    gn = get_norm("GN", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32 and gn.num_channels == 64
    assert set(NORM_REGISTRY.names()) == {"BN", "syncBN", "FrozenBN", "GN"}


def test_unknown_norm_and_bad_group_norm_channels():
    with pytest.raises(RegistryKeyError, match="FrozenBN"):
        get_norm("LayerNorm", 8)
    with pytest.raises(ValueError, match="48 is not divisible"):
        get_norm("GN", 48)


def test_bias_freeze():
    for name in ("BN", "GN"):
        layer = get_norm(name, 64, bias_freeze=True)
        assert layer.weight.requires_grad and not layer.bias.requires_grad
    assert get_norm("BN", 64).bias.requires_grad


def test_frozen_bn_loads_batchnorm_weights_and_matches_eval_batchnorm():
    bn = nn.BatchNorm2d(6)
    bn.train()
    for _ in range(3):
        bn(torch.randn(4, 6, 3, 3) * 2 + 1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    frozen = get_norm("FrozenBN", 6)
    assert list(frozen.parameters()) == []
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is accepted and dropped
    bn.eval()
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(frozen(x), bn(x))
    frozen.train()
    torch.testing.assert_close(frozen(x), bn(x))  # still the stored statistics in training mode


def test_sync_bn_without_process_group_is_batch_norm():
    x = torch.randn(4, 8, 3, 3)
    sync, plain = get_norm("syncBN", 8), get_norm("BN", 8)
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_mean, plain.running_mean)
