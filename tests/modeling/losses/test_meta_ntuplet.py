"""Meta N-tuplet loss (unified view, Eq. 9): a float64 loop over tuplets with phi computed by hand,
gradcheck through phi, the edge batches, and the registered module."""

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from reid.config import InvalidArgument
from reid.modeling.losses import (
    MetaNTupletLoss,
    build_phi,
    count_triplets,
    meta_ntuplet_loss,
    ntuplet_loss,
    sample_tuplets,
)

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def phi_by_hand(phi: torch.nn.Sequential, f: torch.Tensor) -> list[list[float]]:
    """phi(f_i) per sample, W2 BN(W1 f_i), written out: the batch's statistics (biased variance)
    in training mode, the running ones in eval mode."""
    w1, bn, w2 = phi[0].weight.tolist(), phi[1], phi[2].weight.tolist()
    hidden = [[sum(w * x for w, x in zip(row, f_i.tolist())) for row in w1] for f_i in f]
    h, b = len(w1), len(hidden)
    if bn.training:
        mean = [sum(hidden[i][k] for i in range(b)) / b for k in range(h)]
        var = [sum((hidden[i][k] - mean[k]) ** 2 for i in range(b)) / b for k in range(h)]
    else:
        mean, var = bn.running_mean.tolist(), bn.running_var.tolist()
    gamma, beta = bn.weight.tolist(), bn.bias.tolist()
    normed = [
        [(row[k] - mean[k]) / math.sqrt(var[k] + bn.eps) * gamma[k] + beta[k] for k in range(h)]
        for row in hidden
    ]
    return [[sum(w * x for w, x in zip(out, row)) for out in w2] for row in normed]


def reference_meta(
    f: torch.Tensor, refs: list[list[float]], tuplets: torch.Tensor, scale: float
) -> float:
    """Mean over tuplets of -log softmax of s cos(f_a, ref_p) among s cos(f_a, ref_j)."""

    def cos(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    rows = f.tolist()
    total = 0.0
    for anchor, *others in tuplets.tolist():
        logits = [scale * cos(rows[anchor], refs[j]) for j in others]
        m = max(logits)
        total += m + math.log(sum(math.exp(v - m) for v in logits)) - logits[0]
    return total / len(tuplets)


def randomised_phi(dim: int, reduction: int, seed: int) -> torch.nn.Sequential:
    """build_phi with random BN affine parameters and running statistics (not the identity)."""
    phi = build_phi(dim, reduction).double()
    g = torch.Generator().manual_seed(seed)
    bn = phi[1]
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.num_features, generator=g, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g, dtype=torch.float64))
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g, dtype=torch.float64) + 0.5)
    return phi


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("training", [False, True])
def test_matches_the_tuplet_loop_on_unequal_classes(
    make_batch: MakeBatch, n: int, training: bool
) -> None:
    f, y = make_batch([3, 2, 4, 1, 2], dim=8)
    phi = randomised_phi(8, 2, seed=n).train(training)
    value = meta_ntuplet_loss(f, y, phi, n, scale=6.0, generator=torch.Generator().manual_seed(3))
    # The default draw: the batch's number of triplets, from the same generator state.
    tuplets = sample_tuplets(y, n, count_triplets(y), torch.Generator().manual_seed(3))
    assert tuplets.shape == (count_triplets(y), n + 1)
    expected = reference_meta(f, phi_by_hand(phi, f), tuplets, 6.0)
    assert value.item() == pytest.approx(expected, rel=1e-9)


def test_phi_maps_the_reference_nodes_not_the_anchor(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2], dim=4)
    tuplets = sample_tuplets(y, 3, 30, torch.Generator().manual_seed(1))
    # The identity gives the N-tuplet loss on the same tuplets.
    same = meta_ntuplet_loss(f, y, lambda x: x, scale=5.0, tuplets=tuplets)
    assert same.item() == pytest.approx(ntuplet_loss(f, y, scale=5.0, tuplets=tuplets).item())
    # phi = negation: every reference node is flipped (cos(f_a, -x) = -cos(f_a, x)) while the
    # anchor is not, which a loop with the negated references reproduces.
    flipped = meta_ntuplet_loss(f, y, lambda x: -x, scale=5.0, tuplets=tuplets)
    assert flipped.item() == pytest.approx(reference_meta(f, (-f).tolist(), tuplets, 5.0))
    assert flipped.item() > same.item() + 1.0


def test_gradcheck_through_phi_with_batch_statistics(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 3, 2], dim=4)
    tuplets = sample_tuplets(y, 3, 20, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(5)
    w1 = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(2, generator=g, dtype=torch.float64).add(0.5).requires_grad_(True)

    def loss(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        def phi(v: torch.Tensor) -> torch.Tensor:
            hidden = F.batch_norm(F.linear(v, a), None, None, weight=c, training=True)
            return F.linear(hidden, b)

        return meta_ntuplet_loss(x, y, phi, scale=3.0, tuplets=tuplets)

    assert torch.autograd.gradcheck(loss, (f.requires_grad_(True), w1, w2, gamma))


def test_shuffled_batch_with_the_same_tuplets_gives_the_same_loss(make_batch: MakeBatch) -> None:
    f, y = make_batch([4, 1, 2, 3], dim=8)
    phi = randomised_phi(8, 4, seed=0).train()  # batch statistics: order-free as well
    tuplets = sample_tuplets(y, 3, 60, torch.Generator().manual_seed(2))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(9))
    new_index = torch.empty_like(perm)
    new_index[perm] = torch.arange(len(perm))  # sample perm[j] sits at j after shuffling
    shuffled = meta_ntuplet_loss(f[perm], y[perm], phi, scale=4.0, tuplets=new_index[tuplets])
    original = meta_ntuplet_loss(f, y, phi, scale=4.0, tuplets=tuplets)
    assert shuffled.item() == pytest.approx(original.item(), rel=1e-12)


@pytest.mark.parametrize(
    "sizes,zero",
    [
        ([1, 1, 1, 1, 1], True),  # all distinct: no positive
        ([5], True),  # all the same identity: no negative
        ([1], True),  # a single sample
        ([1, 2, 1, 2], False),  # singleton classes beside pairs
        ([4, 1, 2, 3], False),  # unequal class sizes
    ],
)
def test_edge_batches(make_batch: MakeBatch, sizes: list[int], zero: bool) -> None:
    f, y = make_batch(sizes, dim=6)
    f.requires_grad_(True)
    phi = randomised_phi(6, 2, seed=1).train()
    value = meta_ntuplet_loss(f, y, phi, 3, generator=torch.Generator().manual_seed(0))
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value) and value.requires_grad
    assert f.grad is not None and torch.isfinite(f.grad).all()
    if zero:
        # phi is not even run (a BatchNorm in training mode cannot take one sample).
        assert value.item() == 0.0 and torch.count_nonzero(f.grad) == 0
        assert phi[0].weight.grad is None
    else:
        assert value.item() > 0.0 and phi[0].weight.grad.abs().sum() > 0


def test_phi_must_keep_the_feature_shape(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 2], dim=4)
    with pytest.raises(
        ValueError, match=r"phi must map the B x D features to B x D .*\(4, 4\) -> \(4, 2\)"
    ):
        meta_ntuplet_loss(f, y, lambda x: x[:, :2])


def test_module_owns_phi_draws_with_the_global_rng_and_learns_its_scale(
    make_batch: MakeBatch,
) -> None:
    f, y = make_batch([3, 3, 2, 4], dim=16)
    module = MetaNTupletLoss(feat_dim=16, classes_per_tuplet=3, num_tuplets=40, reduction=4)
    module = module.double()
    names = {n for n, _ in module.named_parameters()}
    assert names == {
        "phi.0.weight",
        "phi.1.weight",
        "phi.1.bias",
        "phi.2.weight",
        "scale.log_scale",
    }
    assert module.phi[0].out_features == 4 and module.scale().item() == pytest.approx(16.0)
    torch.manual_seed(11)
    value = module({"features": f}, y)
    tuplets = sample_tuplets(y, 3, 40, torch.Generator().manual_seed(11))
    expected = reference_meta(f, phi_by_hand(module.phi, f), tuplets, module.scale().item())
    assert value.item() == pytest.approx(expected, rel=1e-9)
    value.backward()
    assert module.scale.log_scale.grad is not None and module.scale.log_scale.grad.item() != 0.0
    assert module.phi[2].weight.grad is not None
    with pytest.raises(ValueError, match="MetaNTupletLoss.*16"):
        module({"features": f[:, :8]}, y)
    with pytest.raises(InvalidArgument, match="^classes_per_tuplet must be >= 2"):
        MetaNTupletLoss(feat_dim=16, classes_per_tuplet=1)
    with pytest.raises(InvalidArgument, match="^feat_dim must be positive"):
        MetaNTupletLoss(feat_dim=0)
