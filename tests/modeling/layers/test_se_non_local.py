import torch
import torch.nn.functional as F

from reid.modeling.layers import NonLocalBlock, SELayer


def test_se_layer_gates_channels():
    se = SELayer(32, reduction=16).double()
    assert se.fc1.out_channels == 2 and se.fc2.out_channels == 32
    x = torch.randn(2, 32, 3, 4, dtype=torch.float64)
    squeezed = x.mean(dim=(2, 3))
    hidden = F.relu(squeezed @ se.fc1.weight.flatten(1).T + se.fc1.bias)
    gate = torch.sigmoid(hidden @ se.fc2.weight.flatten(1).T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_non_local_is_identity_at_initialisation():
    block = NonLocalBlock(8)
    x = torch.randn(2, 8, 3, 2)
    torch.testing.assert_close(block(x), x)


def _conv1x1(layer, v: torch.Tensor) -> torch.Tensor:
    return layer.weight.flatten(1) @ v + layer.bias


@torch.no_grad()
def _non_local_loop(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """z_i = x_i + BN(W y_i), y_i = (1/N) sum_j (theta_i . phi_j) g_j, position by position
    (BN in eval mode)."""
    bn = block.W[1]
    out = torch.empty_like(x)
    _, _, h, w = x.shape
    coords = [(i, j) for i in range(h) for j in range(w)]
    for b in range(x.shape[0]):
        for i, j in coords:
            theta = _conv1x1(block.theta, x[b, :, i, j])
            y = sum(
                float(theta @ _conv1x1(block.phi, x[b, :, p, q]))
                / len(coords)
                * _conv1x1(block.g, x[b, :, p, q])
                for p, q in coords
            )
            w_y = _conv1x1(block.W[0], y)
            out[b, :, i, j] = (
                x[b, :, i, j]
                + (w_y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight
                + bn.bias
            )
    return out


def test_non_local_matches_pairwise_loop():
    block = NonLocalBlock(4).double().eval()
    assert block.g.out_channels == 2  # C / 2 by default (Wang et al.)
    with torch.no_grad():
        block.W[1].weight.fill_(1.0)
        block.W[1].bias.fill_(0.25)
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(block(x), _non_local_loop(block, x))


def test_non_local_with_frozen_bn_is_identity_at_initialisation():
    block = NonLocalBlock(8, norm="FrozenBN")  # its norm's weight and bias are buffers
    x = torch.randn(2, 8, 3, 2)
    torch.testing.assert_close(block(x), x)
