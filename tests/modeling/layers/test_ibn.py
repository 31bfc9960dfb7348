import pytest
import torch

from reid.config import InvalidArgument
from reid.modeling.layers import IBN


def _instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            v = x[n, c]
            out[n, c] = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + eps)
    return out


def _batch_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    out = torch.empty_like(x)
    for c in range(x.shape[1]):
        v = x[:, c]
        out[:, c] = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + eps)
    return out


def test_ibn_normalises_first_half_per_instance_and_rest_per_batch():
    ibn = IBN(6).double()
    with torch.no_grad():
        ibn.IN.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
        ibn.IN.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        ibn.BN.weight.copy_(torch.tensor([0.7, 1.1, 0.9]))
        ibn.BN.bias.copy_(torch.tensor([0.0, 0.5, -0.5]))
    x = torch.randn(3, 6, 4, 2, dtype=torch.float64) * 3 + 1
    out = ibn(x)
    w_in, b_in = ibn.IN.weight.detach().view(1, 3, 1, 1), ibn.IN.bias.detach().view(1, 3, 1, 1)
    w_bn, b_bn = ibn.BN.weight.detach().view(1, 3, 1, 1), ibn.BN.bias.detach().view(1, 3, 1, 1)
    torch.testing.assert_close(out[:, :3], _instance_norm(x[:, :3]) * w_in + b_in)
    torch.testing.assert_close(out[:, 3:], _batch_norm(x[:, 3:]) * w_bn + b_bn)


def test_ibn_names_and_split_match_ibn_net():
    ibn = IBN(65)
    assert ibn.instance_channels == 32 and ibn.IN.num_features == 32 and ibn.BN.num_features == 33
    assert sorted(ibn.state_dict()) == [
        "BN.bias",
        "BN.num_batches_tracked",
        "BN.running_mean",
        "BN.running_var",
        "BN.weight",
        "IN.bias",
        "IN.weight",
    ]
    assert ibn(torch.randn(2, 65, 3, 3)).shape == (2, 65, 3, 3)
    with pytest.raises(InvalidArgument, match="planes=1"):
        IBN(1)
