"""N-tuplet loss: exact uniform tuplet sampling, loop re-computation, and the n = 2 triplet identity."""

import itertools
import math
from collections import Counter

import pytest
import torch

from reid.config import get_cfg
from reid.config.config import merge_from_list
from reid.modeling.losses import (
    NTupletLoss,
    count_triplets,
    ntuplet_loss,
    sample_tuplets,
    triplet_loss,
)


def all_tuplets(y, n):
    """Every (anchor, positive, set of n - 1 negatives of distinct other classes) of the batch."""
    labels = y.tolist()
    out = []
    for a, la in enumerate(labels):
        others = sorted(set(labels) - {la})
        for p in (p for p, lp in enumerate(labels) if lp == la and p != a):
            for classes in itertools.combinations(others, n - 1):
                members = [[i for i, l in enumerate(labels) if l == c] for c in classes]
                for negs in itertools.product(*members):
                    out.append((a, p, frozenset(negs)))
    return out


def reference_ntuplet(f, tuplets, scale):
    fn = f / f.norm(dim=1, keepdim=True)
    total = 0.0
    for row in tuplets.tolist():
        sims = [scale * float(fn[row[0]] @ fn[j]) for j in row[1:]]
        m = max(sims)
        total += m + math.log(sum(math.exp(s - m) for s in sims)) - sims[0]
    return total / len(tuplets)


def test_count_triplets():
    y = torch.arange(16).repeat_interleave(4)
    assert count_triplets(y) == 11520
    y = torch.tensor([5, 5, 5, 9, 2, 2])
    assert count_triplets(y) == sum(1 for t in all_tuplets(y, 2))


def test_sampled_tuplets_are_valid_on_unequal_classes(make_batch):
    _, y = make_batch([5, 1, 3, 2, 4, 1])
    t = sample_tuplets(y, 4, 500, torch.Generator().manual_seed(1))
    assert t.shape == (500, 5) and t.dtype == torch.int64
    a, p, negs = y[t[:, 0]], y[t[:, 1]], y[t[:, 2:]]
    assert (a == p).all() and (t[:, 0] != t[:, 1]).all()
    assert (negs != a.unsqueeze(1)).all()
    assert all(len(set(row)) == 3 for row in negs.tolist())


def test_n_is_capped_at_the_number_of_classes(make_batch):
    _, y = make_batch([2, 3, 2])
    assert sample_tuplets(y, 16, 10).shape == (10, 4)


def test_sampling_is_exactly_uniform_over_all_tuplets():
    # Unequal class sizes: anchors of bigger classes own more tuplets and must be drawn more often.
    y = torch.tensor([4, 4, 4, 7, 7, 1, 9, 9])
    universe = all_tuplets(y, 3)
    assert len(universe) == 92
    draws = 92 * 1500
    t = sample_tuplets(y, 3, draws, torch.Generator().manual_seed(0))
    counts = Counter((r[0], r[1], frozenset(r[2:])) for r in t.tolist())
    assert set(counts) <= set(universe)
    expected = draws / len(universe)
    chi2 = sum((counts.get(u, 0) - expected) ** 2 / expected for u in universe)
    dof = len(universe) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)


def test_sampling_uses_the_generator_or_the_global_rng(make_batch):
    _, y = make_batch([3, 3, 2, 4])
    first = sample_tuplets(y, 3, 50, torch.Generator().manual_seed(7))
    assert torch.equal(first, sample_tuplets(y, 3, 50, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, sample_tuplets(y, 3, 50, torch.Generator().manual_seed(8)))
    torch.manual_seed(7)
    assert torch.equal(first, sample_tuplets(y, 3, 50))


def test_no_valid_tuplet_gives_an_empty_set():
    assert sample_tuplets(torch.tensor([1, 2, 3]), 2, 10).shape == (0, 3)
    assert sample_tuplets(torch.tensor([1, 1, 1]), 4, 10).shape == (0, 2)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_loss_matches_tuplet_loop_and_defaults_to_the_triplet_count(make_batch, n):
    f, y = make_batch([3, 2, 4, 1, 2], dim=5)
    value = ntuplet_loss(f, y, n, scale=6.0, generator=torch.Generator().manual_seed(3))
    tuplets = sample_tuplets(y, n, count_triplets(y), torch.Generator().manual_seed(3))
    assert value.item() == pytest.approx(reference_ntuplet(f, tuplets, 6.0), rel=1e-9)


def test_n_equal_two_is_the_soft_margin_cosine_triplet_on_the_same_tuplets(make_batch):
    f, y = make_batch([3, 2, 4], dim=5)
    every_triplet = torch.tensor([[a, p, *negs] for a, p, negs in all_tuplets(y, 2)])
    value = ntuplet_loss(f, y, scale=4.0, tuplets=every_triplet)
    expected = triplet_loss(
        f, y, margin=0.0, mining="all", distance="cosine", soft_margin=True, scale=4.0
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gradcheck_on_fixed_tuplets(make_batch):
    f, y = make_batch([2, 2, 3], dim=3)
    tuplets = sample_tuplets(y, 3, 20, torch.Generator().manual_seed(0))
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ntuplet_loss(x, y, scale=3.0, tuplets=tuplets), (f,))


def test_module_keys_global_rng_and_learnable_scale(make_batch):
    f, y = make_batch([3, 3, 2, 4], dim=5)
    cfg = get_cfg()
    merge_from_list(
        cfg,
        [
            "MODEL.LOSSES.NTUPLET.CLASSES_PER_TUPLET",
            3,
            "MODEL.LOSSES.NTUPLET.NUM_TUPLETS",
            40,
            "MODEL.LOSSES.NTUPLET.SIM_SCALE",
            10.0,
        ],
    )
    module = NTupletLoss(cfg).double()
    assert module.scale.learnable  # the unified-view paper learns the temperature of every loss
    torch.manual_seed(11)
    value = module({"features": f}, y)
    tuplets = sample_tuplets(y, 3, 40, torch.Generator().manual_seed(11))
    assert value.item() == pytest.approx(
        reference_ntuplet(f, tuplets, module.scale().item()), rel=1e-9
    )
    value.backward()
    assert module.scale.log_scale.grad.item() != 0.0
    merge_from_list(cfg, ["MODEL.LOSSES.NTUPLET.CLASSES_PER_TUPLET", 1])
    with pytest.raises(ValueError, match="MODEL.LOSSES.NTUPLET.CLASSES_PER_TUPLET must be >= 2"):
        NTupletLoss(cfg)
