"""N-tuplet loss: exact uniform tuplet sampling, a loop re-computation, the n = 2 identity."""

import itertools
import math
from collections import Counter
from collections.abc import Callable

import pytest
import torch

from reid.config import InvalidArgument
from reid.modeling.losses import (
    NTupletLoss,
    count_triplets,
    ntuplet_loss,
    sample_tuplets,
    triplet_loss,
)

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]
Tuplet = tuple[int, int, frozenset[int]]


def all_tuplets(y: torch.Tensor, n: int) -> list[Tuplet]:
    """Every (anchor, positive, set of n - 1 negatives of distinct other classes) of the batch."""
    labels = y.tolist()
    out: list[Tuplet] = []
    for a, la in enumerate(labels):
        others = sorted(set(labels) - {la})
        for p in (p for p, lp in enumerate(labels) if lp == la and p != a):
            for classes in itertools.combinations(others, n - 1):
                members = [[i for i, label in enumerate(labels) if label == c] for c in classes]
                for negs in itertools.product(*members):
                    out.append((a, p, frozenset(negs)))
    return out


def reference_ntuplet(f: torch.Tensor, tuplets: torch.Tensor, scale: float) -> float:
    fn = f / f.norm(dim=1, keepdim=True)
    total = 0.0
    for row in tuplets.tolist():
        sims = [scale * float(fn[row[0]] @ fn[j]) for j in row[1:]]
        m = max(sims)
        total += m + math.log(sum(math.exp(s - m) for s in sims)) - sims[0]
    return total / len(tuplets)


def test_count_triplets() -> None:
    y = torch.arange(16).repeat_interleave(4)
    assert count_triplets(y) == 11520
    y = torch.tensor([5, 5, 5, 9, 2, 2])
    assert count_triplets(y) == sum(1 for t in all_tuplets(y, 2))


def test_sampled_tuplets_are_valid_on_unequal_classes(make_batch: MakeBatch) -> None:
    _, y = make_batch([5, 1, 3, 2, 4, 1])
    t = sample_tuplets(y, 4, 500, torch.Generator().manual_seed(1))
    assert t.shape == (500, 5) and t.dtype == torch.int64
    a, p, negs = y[t[:, 0]], y[t[:, 1]], y[t[:, 2:]]
    assert (a == p).all() and (t[:, 0] != t[:, 1]).all()
    assert (negs != a.unsqueeze(1)).all()
    assert all(len(set(row)) == 3 for row in negs.tolist())


def test_n_is_capped_at_the_number_of_classes(make_batch: MakeBatch) -> None:
    _, y = make_batch([2, 3, 2])
    assert sample_tuplets(y, 16, 10).shape == (10, 4)


def test_sampling_is_exactly_uniform_over_all_tuplets() -> None:
    # Unequal class sizes: anchors of bigger classes own more tuplets and must be drawn more often.
    y = torch.tensor([4, 4, 4, 7, 7, 1, 9, 9])
    universe = all_tuplets(y, 3)
    assert len(universe) == 92
    draws = 92 * 1500
    t = sample_tuplets(y, 3, draws, torch.Generator().manual_seed(0))
    counts: Counter[Tuplet] = Counter((r[0], r[1], frozenset(r[2:])) for r in t.tolist())
    assert set(counts) <= set(universe)
    expected = draws / len(universe)
    chi2 = sum((counts.get(u, 0) - expected) ** 2 / expected for u in universe)
    dof = len(universe) - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)


def test_sampling_uses_the_generator_or_the_global_rng(make_batch: MakeBatch) -> None:
    _, y = make_batch([3, 3, 2, 4])
    first = sample_tuplets(y, 3, 50, torch.Generator().manual_seed(7))
    assert torch.equal(first, sample_tuplets(y, 3, 50, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, sample_tuplets(y, 3, 50, torch.Generator().manual_seed(8)))
    torch.manual_seed(7)
    assert torch.equal(first, sample_tuplets(y, 3, 50))


def test_no_valid_tuplet_gives_an_empty_set() -> None:
    assert sample_tuplets(torch.tensor([1, 2, 3]), 2, 10).shape == (0, 3)
    assert sample_tuplets(torch.tensor([1, 1, 1]), 4, 10).shape == (0, 2)


# Draws of sample_tuplets saved before its body was split into phases: the same seed must give the
# same tuplets. Small cases as the tuplets, large ones as sum(t * (1, 2, 3, ...)) over the rows.
SAVED_SMALL = [
    (
        [4, 4, 4, 7, 7, 1, 9, 9],
        3,
        12,
        0,
        [
            [7, 6, 5, 0],
            [4, 3, 1, 6],
            [2, 0, 5, 6],
            [7, 6, 5, 4],
            [4, 3, 5, 6],
            [6, 7, 5, 0],
            [1, 0, 3, 6],
            [2, 0, 3, 6],
            [3, 4, 5, 1],
            [1, 0, 4, 6],
            [2, 0, 5, 7],
            [1, 0, 4, 6],
        ],
    ),
    (
        [5, 5, 2, 9, 9, 9, 3, 5, 2, 8, 5, 9, 9],
        4,
        10,
        1,
        [
            [0, 7, 8, 9, 4],
            [2, 8, 7, 9, 5],
            [2, 8, 1, 9, 5],
            [1, 0, 8, 9, 11],
            [7, 1, 2, 9, 12],
            [1, 0, 2, 6, 5],
            [5, 12, 8, 6, 9],
            [10, 7, 2, 9, 5],
            [7, 1, 8, 9, 5],
            [5, 3, 8, 6, 10],
        ],
    ),
]


@pytest.mark.parametrize("labels,n,count,seed,expected", SAVED_SMALL)
def test_sampling_reproduces_the_saved_draws(
    labels: list[int], n: int, count: int, seed: int, expected: list[list[int]]
) -> None:
    t = sample_tuplets(torch.tensor(labels), n, count, torch.Generator().manual_seed(seed))
    assert t.tolist() == expected


def test_sampling_reproduces_the_saved_checksums_of_large_draws() -> None:
    pk = torch.arange(16).repeat_interleave(4)
    shuffled = torch.arange(8).repeat_interleave(3)
    shuffled = shuffled[torch.randperm(24, generator=torch.Generator().manual_seed(2))]
    for y, n, count, seed, shape, checksum in (
        (pk, 16, 11520, 3, (11520, 17), 604004737905),
        (shuffled, 4, 3000, 5, (3000, 5), 1297849481),
    ):
        t = sample_tuplets(y, n, count, torch.Generator().manual_seed(seed))
        weights = torch.arange(1, t.numel() + 1, dtype=torch.int64).view_as(t)
        assert t.shape == shape and int((t * weights).sum()) == checksum


@pytest.mark.parametrize("n", [2, 3, 4])
def test_loss_matches_tuplet_loop_and_defaults_to_the_triplet_count(
    make_batch: MakeBatch, n: int
) -> None:
    f, y = make_batch([3, 2, 4, 1, 2], dim=5)
    value = ntuplet_loss(f, y, n, scale=6.0, generator=torch.Generator().manual_seed(3))
    tuplets = sample_tuplets(y, n, count_triplets(y), torch.Generator().manual_seed(3))
    assert value.item() == pytest.approx(reference_ntuplet(f, tuplets, 6.0), rel=1e-9)


def test_n_equal_two_is_the_soft_margin_cosine_triplet_on_the_same_tuplets(
    make_batch: MakeBatch,
) -> None:
    f, y = make_batch([3, 2, 4], dim=5)
    every_triplet = torch.tensor([[a, p, *negs] for a, p, negs in all_tuplets(y, 2)])
    value = ntuplet_loss(f, y, scale=4.0, tuplets=every_triplet)
    expected = triplet_loss(
        f, y, margin=0.0, mining="all", distance="cosine", soft_margin=True, scale=4.0
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gradcheck_on_fixed_tuplets(make_batch: MakeBatch) -> None:
    f, y = make_batch([2, 2, 3], dim=3)
    tuplets = sample_tuplets(y, 3, 20, torch.Generator().manual_seed(0))
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: ntuplet_loss(x, y, scale=3.0, tuplets=tuplets), (f,))


def test_module_global_rng_and_learnable_scale(make_batch: MakeBatch) -> None:
    f, y = make_batch([3, 3, 2, 4], dim=5)
    module = NTupletLoss(classes_per_tuplet=3, num_tuplets=40, sim_scale=10.0).double()
    assert module.scale.learnable  # the unified-view paper learns the temperature of every loss
    torch.manual_seed(11)
    value = module({"features": f}, y)
    tuplets = sample_tuplets(y, 3, 40, torch.Generator().manual_seed(11))
    assert value.item() == pytest.approx(
        reference_ntuplet(f, tuplets, module.scale().item()), rel=1e-9
    )
    value.backward()
    grad = module.scale.log_scale.grad
    assert grad is not None and grad.item() != 0.0
    with pytest.raises(InvalidArgument, match="^classes_per_tuplet must be >= 2"):
        NTupletLoss(classes_per_tuplet=1)
