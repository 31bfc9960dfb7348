"""BalancedIdentitySampler: fastreid's camera-balanced draw, checked against an exact enumeration
of the rule; passes, epochs, seeding and the rank split."""

import itertools
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

import pytest

from reid.config import get_cfg
from reid.data.samplers import BalancedIdentitySampler, build_train_sampler, sampler_class


@dataclass(frozen=True)
class Rec:
    path: str
    pid: int
    camid: int
    dataset: str


def _chunks(seq: list[int], size: int) -> list[list[int]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def ordered_draws(pool: list[int], k: int, replace: bool) -> dict[tuple[int, ...], Fraction]:
    """Exact distribution of k ordered draws from ``pool`` (uniform; with or without
    replacement), as numpy's ``choice`` makes them."""
    if replace:
        return {t: Fraction(1, len(pool) ** k) for t in itertools.product(pool, repeat=k)}
    perms = list(itertools.permutations(pool, k))
    return {t: Fraction(1, len(perms)) for t in perms}


def fastreid_chunk_distribution(
    indices: list[int], cams: list[int], k: int
) -> dict[tuple[int, ...], Fraction]:
    """fastreid's BalancedIdentitySampler, one identity: the exact distribution of its K
    indices. First a uniform image i; then K - 1 from the images of other cameras than i's
    (without replacement iff there are >= K of them); failing those, from the other images
    (same rule); failing those, i repeated."""
    dist: dict[tuple[int, ...], Fraction] = Counter()
    for first, cam in zip(indices, cams):
        pool = [j for j, c in zip(indices, cams) if c != cam]
        if not pool:
            pool = [j for j in indices if j != first]
        if not pool:
            dist[(first,) * k] += Fraction(1, len(indices))
            continue
        for rest, p in ordered_draws(pool, k - 1, replace=len(pool) < k).items():
            dist[(first, *rest)] += p / len(indices)
    return dict(dist)


# identity 0: cameras 0,0,1,1,1 (indices 0..4); identity 1: one camera, 2 images (5, 6);
# identity 2: one image (7); identity 3: cameras 2 and 3, 2 images each (8..11)
PIDS = [0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
CAMS = [0, 0, 1, 1, 1, 4, 4, 5, 2, 3, 2, 3]


@pytest.mark.parametrize("k", [2, 3])
def test_chunks_follow_fastreids_rule_exactly_in_distribution(k: int) -> None:
    epochs = 2000
    seen: dict[int, Counter] = {pid: Counter() for pid in set(PIDS)}
    s = BalancedIdentitySampler(PIDS, CAMS, batch_size=4 * k, num_instance=k, seed=11)
    for epoch in range(epochs):
        s.set_epoch(epoch)
        for chunk in _chunks(list(s), k):
            seen[PIDS[chunk[0]]][tuple(chunk)] += 1
    for pid, counts in seen.items():
        indices = [i for i, p in enumerate(PIDS) if p == pid]
        expected = fastreid_chunk_distribution(indices, [CAMS[i] for i in indices], k)
        total = sum(counts.values())
        assert total == epochs and set(counts) <= set(expected)
        for chunk, p in expected.items():
            sd = (float(p) * (1 - float(p)) / total) ** 0.5
            assert abs(counts[chunk] / total - float(p)) <= 4.5 * sd + 1e-9, (pid, chunk)


def test_other_camera_images_are_preferred() -> None:
    # with K = 3, identity 0's first image from camera 0 (indices 0, 1) pairs with two of the
    # three camera-1 images, distinct (3 >= K); from camera 1, with indices 0 and 1, repeated
    # draws allowed (2 < K)
    s = BalancedIdentitySampler(PIDS, CAMS, batch_size=12, num_instance=3, seed=0)
    for epoch in range(200):
        s.set_epoch(epoch)
        chunk = next(c for c in _chunks(list(s), 3) if PIDS[c[0]] == 0)
        if CAMS[chunk[0]] == 0:
            assert set(chunk[1:]) <= {2, 3, 4} and len(set(chunk[1:])) == 2
        else:
            assert set(chunk[1:]) <= {0, 1}


def test_identity_passes_drop_the_remainder() -> None:
    pids = [pid for pid in range(10) for _ in range(3)]
    cams = [i % 2 for i in range(30)]
    s = BalancedIdentitySampler(pids, cams, batch_size=8, num_instance=2, seed=3)
    assert s.batches_per_pass == s.num_batches == 2 and len(s) == 16  # floor(10 / 4)
    left_out = set()
    for epoch in range(20):
        s.set_epoch(epoch)
        batches = [[pids[c[0]] for c in _chunks(b, 2)] for b in _chunks(list(s), 8)]
        ids = [pid for b in batches for pid in b]
        assert len(ids) == len(set(ids)) == 8  # at most once per pass, P distinct per batch
        left_out |= set(range(10)) - set(ids)
    assert left_out == set(range(10))  # which two sit out changes with the epoch


def test_images_epoch_chains_passes() -> None:
    pids = [pid for pid in range(10) for _ in range(3)]
    cams = [i % 2 for i in range(30)]
    assert BalancedIdentitySampler(pids, cams, 8, 2, seed=3, epoch_length="images").num_batches == 3
    s = BalancedIdentitySampler(pids, cams, 8, 2, seed=3, epoch_length="images_ceil")
    assert s.num_batches == -(-30 // 8) == 4
    batches = [[pids[c[0]] for c in _chunks(b, 2)] for b in _chunks(list(s), 8)]
    for one_pass in (batches[:2], batches[2:]):
        ids = [pid for b in one_pass for pid in b]
        assert len(ids) == len(set(ids))


def test_seeded_by_seed_and_epoch_and_split_into_whole_identities() -> None:
    pids = [pid for pid in range(12) for _ in range(4)]
    cams = [i % 3 for i in range(48)]
    full = BalancedIdentitySampler(pids, cams, 8, 2, seed=5)
    again = BalancedIdentitySampler(pids, cams, 8, 2, seed=5)
    assert list(full) == list(again) != list(BalancedIdentitySampler(pids, cams, 8, 2, seed=6))
    ranks = [BalancedIdentitySampler(pids, cams, 8, 2, 5, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 4):
        for s in [full, *ranks]:
            s.set_epoch(epoch)
        outs = [list(r) for r in ranks]
        for b, batch in enumerate(full.global_batches()):
            assert outs[0][b * 4 : b * 4 + 4] + outs[1][b * 4 : b * 4 + 4] == batch
            for part in (outs[0][b * 4 : b * 4 + 4], outs[1][b * 4 : b * 4 + 4]):
                assert [pids[i] for i in part[::2]] == [pids[i] for i in part[1::2]]


def test_registered_and_built_from_the_config() -> None:
    assert sampler_class("BalancedIdentitySampler").identity_batches
    records = [Rec(f"{i}.jpg", p, c, "X") for i, (p, c) in enumerate(zip(PIDS, CAMS))]
    cfg = get_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "BalancedIdentitySampler"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 6, 3
    s = build_train_sampler(cfg, records, rank=0, world_size=1, seed=7)
    assert isinstance(s, BalancedIdentitySampler)
    assert list(s) == list(BalancedIdentitySampler(PIDS, CAMS, 6, 3, seed=7))


def test_errors_name_the_sampler() -> None:
    with pytest.raises(ValueError, match="^camids must give one camera per image: 2 for 12"):
        BalancedIdentitySampler(PIDS, [0, 1], 4, 2)
    with pytest.raises(
        ValueError, match="^BalancedIdentitySampler: a batch needs P = 8 distinct identities"
    ):
        BalancedIdentitySampler(PIDS, CAMS, 16, 2)
