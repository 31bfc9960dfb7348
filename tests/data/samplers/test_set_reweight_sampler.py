"""SetReWeightSampler: identities per set, drawn in proportion to their images in the set;
checked against exact probabilities of the rule."""

import itertools
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

import pytest

from reid.config import ConfigError, get_cfg
from reid.data.samplers import SetReWeightSampler, build_train_sampler, sampler_class


@dataclass(frozen=True)
class Rec:
    path: str
    pid: int
    camid: int
    dataset: str


def _chunks(seq: list[int], size: int) -> list[list[int]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def weighted_subsets(weights: dict[int, int], n: int) -> dict[frozenset, Fraction]:
    """Exact distribution of the set of n items drawn one by one without replacement, each
    draw proportional to the weights of the items left."""
    dist: dict[frozenset, Fraction] = Counter()
    for order in itertools.permutations(weights, n):
        p, left = Fraction(1), sum(weights.values())
        for item in order:
            p *= Fraction(weights[item], left)
            left -= weights[item]
        dist[frozenset(order)] += p
    return dict(dist)


# set 0 (camera 0): identity 10 with 1 image, 11 with 2, 12 with 3;
# set 1 (camera 1): identity 20 with 1 image, 21 with 4, 12 with 1 (12 is in both sets)
IMAGES = [(10, 0)] + [(11, 0)] * 2 + [(12, 0)] * 3 + [(20, 1)] + [(21, 1)] * 4 + [(12, 1)]
PIDS = [p for p, _ in IMAGES]
CAMS = [c for _, c in IMAGES]


def test_batches_draw_the_set_weights_in_proportion_to_images() -> None:
    # one identity from set 0 and two from set 1 per batch, K = 2
    s = SetReWeightSampler(PIDS, CAMS, [1, 2], batch_size=6, num_instance=2, seed=0)
    assert s.per_set == [1, 2] and s.num_batches == 2  # ceil(5 identities / 3)
    first: Counter = Counter()
    joint: Counter = Counter()
    n = 0
    for epoch in range(1000):
        s.set_epoch(epoch)
        for batch in _chunks(list(s), 6):
            ids = [PIDS[c[0]] for c in _chunks(batch, 2)]
            assert len(set(ids)) == 3  # one identity appears once per batch
            # 10 and 11 are only in set 0; without them, set 0 gave 12
            set0 = next((i for i in (10, 11) if i in ids), 12)
            first[set0] += 1
            joint[(set0, frozenset(i for i in ids if i != set0))] += 1
            n += 1
    # set 0 is drawn first: P(identity) = its images in set 0 / 6
    for pid, p in {10: Fraction(1, 6), 11: Fraction(2, 6), 12: Fraction(3, 6)}.items():
        assert abs(first[pid] / n - float(p)) < 4.5 * (float(p) * (1 - float(p)) / n) ** 0.5
    # set 1 then draws two among its identities not taken, by their images in set 1
    set1 = {20: 1, 21: 4, 12: 1}
    for pid0, p0 in {10: Fraction(1, 6), 11: Fraction(2, 6), 12: Fraction(3, 6)}.items():
        left = {k: v for k, v in set1.items() if k != pid0}
        for pair, p in weighted_subsets(left, 2).items():
            expected = float(p0 * p)
            sd = (expected * (1 - expected) / n) ** 0.5
            assert abs(joint[(pid0, pair)] / n - expected) < 4.5 * sd + 1e-9


def test_each_identity_gives_k_images_as_the_pk_sampler() -> None:
    s = SetReWeightSampler(PIDS, CAMS, [1, 1], batch_size=6, num_instance=3, seed=1)
    assert s.per_set == [1, 1] and s.num_pids_per_batch == 2
    for epoch in range(50):
        s.set_epoch(epoch)
        for chunk in _chunks(list(s), 3):
            pid = PIDS[chunk[0]]
            own = {i for i, p in enumerate(PIDS) if p == pid}
            assert set(chunk) <= own
            if len(own) >= 3:
                assert len(set(chunk)) == 3  # distinct when the identity has >= K images
            else:
                assert set(chunk) == own  # all of them, then repeats


def test_p_a_multiple_of_the_weights_and_the_rank_split() -> None:
    pids = [pid for pid in range(16) for _ in range(2)]
    cams = [0 if pid < 8 else 1 for pid in pids]
    s = SetReWeightSampler(pids, cams, [1, 1], batch_size=16, num_instance=2, seed=4)
    assert s.per_set == [4, 4]  # P = 8 = 4 x (1 + 1)
    ranks = [
        SetReWeightSampler(pids, cams, [1, 1], 16, 2, seed=4, rank=r, world_size=2) for r in (0, 1)
    ]
    for epoch in (0, 2):
        for x in [s, *ranks]:
            x.set_epoch(epoch)
        outs = [list(r) for r in ranks]
        for b, batch in enumerate(s.global_batches()):
            ids = [pids[c[0]] for c in _chunks(batch, 2)]
            assert sum(i < 8 for i in ids) == 4 and len(set(ids)) == 8
            assert outs[0][b * 8 : b * 8 + 8] + outs[1][b * 8 : b * 8 + 8] == batch
    s.set_epoch(0)
    assert list(s) == list(SetReWeightSampler(pids, cams, [1, 1], 16, 2, seed=4))
    assert list(s) != list(SetReWeightSampler(pids, cams, [1, 1], 16, 2, seed=5))


@pytest.mark.parametrize(
    "weights, batch_size, message",
    [
        ([], 4, r"^DATALOADER\.SET_WEIGHT must be whole numbers >= 0, one per set"),
        ([0, 0], 4, r"^DATALOADER\.SET_WEIGHT must be whole numbers >= 0"),
        ([1, 1, 1], 4, r"gives 3 weights but the sets \(camera ids\) .* are \[0, 1\]"),
        ([2, 1], 4, r"sums to 3, which does not divide P = 2 identities per batch"),
        ([0, 4], 8, r"asks 4 identities of set 1 per batch after 0 .* has only 3 identities"),
        ([3, 2], 10, r"asks 2 identities of set 1 per batch after 3 .* has only 3 identities"),
    ],
)
def test_config_errors_name_the_key(weights: list[int], batch_size: int, message: str) -> None:
    records = [Rec(f"{i}.jpg", p, c, "X") for i, (p, c) in enumerate(zip(PIDS, CAMS))]
    cfg = get_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "SetReWeightSampler"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = batch_size, 2
    cfg.DATALOADER.SET_WEIGHT = weights
    with pytest.raises(ConfigError, match=message):
        build_train_sampler(cfg, records, rank=0, world_size=1, seed=0)


def test_registered_with_identity_batches() -> None:
    assert sampler_class("SetReWeightSampler") is SetReWeightSampler
    assert SetReWeightSampler.identity_batches
    assert get_cfg().DATALOADER.SET_WEIGHT == []  # fastreid's default
