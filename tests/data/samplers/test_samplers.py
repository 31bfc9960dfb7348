"""PK sampler structure, coverage, determinism and rank split; the plain training sampler."""

from collections import Counter
from dataclasses import dataclass
from typing import cast

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reid.config import ConfigError, get_cfg
from reid.data.samplers import (
    NaiveIdentitySampler,
    TrainingSampler,
    build_train_sampler,
    sampler_class,
)
from reid.data.samplers.build import check_sampler_class
from reid.utils.registry import Registry


@dataclass(frozen=True)
class Rec:
    """Stands in for reid.data.datasets.bases.Record (the sampler reads ``pid`` only)."""

    path: str
    pid: int
    camid: int
    dataset: str


# identity -> number of images: some with fewer than K = 4 images
COUNTS = {10: 5, 11: 1, 12: 3, 13: 8, 14: 2, 15: 4, 16: 4, 17: 6, 18: 2, 19: 7}


def _pids(counts: dict[int, int] = COUNTS) -> list[int]:
    pids = [pid for pid, n in counts.items() for _ in range(n)]
    # interleave so indices of one identity are not contiguous
    return [
        pids[i]
        for i in torch.randperm(len(pids), generator=torch.Generator().manual_seed(3)).tolist()
    ]


def _chunks(seq: list[int], size: int) -> list[list[int]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def test_batches_hold_p_distinct_identities_times_k() -> None:
    pids = _pids()
    s = NaiveIdentitySampler(pids, batch_size=16, num_instance=4, seed=0)
    indices = list(s)
    assert len(indices) == len(s) == 3 * 16 and s.num_batches == 3 and s.batch_size == 16
    for batch in _chunks(indices, 16):
        ids = []
        for chunk in _chunks(batch, 4):
            chunk_pids = {pids[i] for i in chunk}
            assert len(chunk_pids) == 1
            pid = chunk_pids.pop()
            ids.append(pid)
            if COUNTS[pid] >= 4:
                assert len(set(chunk)) == 4
            else:
                assert {i for i, p in enumerate(pids) if p == pid} <= set(chunk)
        assert len(set(ids)) == 4


def test_every_identity_once_per_epoch_last_batch_topped_up() -> None:
    pids = _pids()
    for epoch in range(5):
        s = NaiveIdentitySampler(pids, batch_size=16, num_instance=4, seed=7)
        s.set_epoch(epoch)
        batches = [[pids[c[0]] for c in _chunks(b, 4)] for b in _chunks(list(s), 16)]
        counts = Counter(pid for b in batches for pid in b)
        assert set(counts) == set(COUNTS)
        first = [pid for b in batches[:-1] for pid in b]
        assert len(first) == len(set(first)) == 8
        new_in_last = [pid for pid in batches[-1] if pid not in first]
        assert len(new_in_last) == 2 and len(set(batches[-1])) == 4


def test_single_image_identity_is_repeated_k_times() -> None:
    pids = [0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    s = NaiveIdentitySampler(pids, batch_size=8, num_instance=4, seed=0)
    for epoch in range(4):
        s.set_epoch(epoch)
        chunks = _chunks(list(s), 4)
        assert [0, 0, 0, 0] in chunks


def test_deterministic_given_seed_and_epoch() -> None:
    pids = _pids()
    a = NaiveIdentitySampler(pids, 16, 4, seed=5)
    b = NaiveIdentitySampler(pids, 16, 4, seed=5)
    torch.manual_seed(123)
    first = list(a)
    torch.manual_seed(456)
    assert list(b) == first and list(a) == first
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(NaiveIdentitySampler(pids, 16, 4, seed=6)) != first


def test_rank_split_identity_complete_and_disjoint() -> None:
    counts = {pid: 3 + pid % 4 for pid in range(12)}
    pids = _pids(counts)
    full = NaiveIdentitySampler(pids, batch_size=8, num_instance=2, seed=1)
    ranks = [
        NaiveIdentitySampler(pids, batch_size=8, num_instance=2, seed=1, rank=r, world_size=2)
        for r in range(2)
    ]
    for epoch in (0, 3):
        for s in [full] + ranks:
            s.set_epoch(epoch)
        outs = [list(s) for s in ranks]
        assert all(s.batch_size == 4 and len(s) == len(o) == 3 * 4 for s, o in zip(ranks, outs))
        for b, glob in enumerate(full.global_batches()):
            parts = [o[b * 4 : (b + 1) * 4] for o in outs]
            assert parts[0] + parts[1] == glob
            ids = [{pids[i] for i in p} for p in parts]
            assert ids[0].isdisjoint(ids[1])
            assert all(
                Counter(pids[i] for i in p) == {pid: 2 for pid in id_set}
                for p, id_set in zip(parts, ids)
            )
        # 12 identities, P = 4: no top-up, so the ranks see disjoint images and identities
        assert set(outs[0]).isdisjoint(outs[1])
        assert {pids[i] for i in outs[0]} | {pids[i] for i in outs[1]} == set(counts)


def test_loader_batches_follow_the_sampler() -> None:
    pids = _pids()
    s = NaiveIdentitySampler(pids, batch_size=16, num_instance=4, seed=2, rank=1, world_size=2)
    indices = cast(Dataset[int], list(range(len(pids))))  # a list is a map-style dataset
    loader = DataLoader(indices, sampler=s, batch_size=s.batch_size)
    got = [b.tolist() for b in loader]
    assert got == [g[8:16] for g in s.global_batches()]


def test_identity_sampler_errors() -> None:
    pids = _pids()
    with pytest.raises(ValueError, match=r"P = 4 .* must be divisible by the world size 3"):
        NaiveIdentitySampler(pids, 16, 4, rank=0, world_size=3)
    with pytest.raises(
        ValueError, match="needs P = 16 distinct identities but the training set has only 10"
    ):
        NaiveIdentitySampler(pids, 64, 4)
    with pytest.raises(
        ValueError,
        match=r"batch size \(10, SOLVER.IMS_PER_BATCH\) .* \(4, DATALOADER.NUM_INSTANCE\)",
    ):
        NaiveIdentitySampler(pids, 10, 4)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        NaiveIdentitySampler(pids, 16, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        NaiveIdentitySampler(pids, 16, 4, seed=-1)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        NaiveIdentitySampler(pids, 16, 4).set_epoch(-2)


def test_training_sampler_permutes_and_splits() -> None:
    s = TrainingSampler(10, batch_size=4, seed=0)
    order = list(s)
    assert sorted(order) == list(range(10)) and order != list(range(10)) and len(s) == 10
    s.set_epoch(1)
    assert list(s) != order and sorted(s) == list(range(10))
    parts = [
        list(TrainingSampler(10, batch_size=4, seed=0, rank=r, world_size=2)) for r in range(2)
    ]
    assert parts[0] == order[0::2] and parts[1] == order[1::2]
    odd = [list(TrainingSampler(7, batch_size=4, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert [len(p) for p in odd] == [4, 4]
    assert set(odd[0]) | set(odd[1]) == set(range(7))
    with pytest.raises(ValueError, match="multiple of the world size 4"):
        TrainingSampler(10, batch_size=6, world_size=4)


def test_build_train_sampler_from_config() -> None:
    records = [Rec(f"{i}.jpg", pid, 0, "Synthetic") for i, pid in enumerate(_pids())]
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 8, 2
    t = build_train_sampler(cfg, records, rank=0, world_size=1, seed=4)  # fastreid's default
    assert isinstance(t, TrainingSampler) and len(t) == len(records)
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    s = build_train_sampler(cfg, records, rank=1, world_size=2, seed=4)
    assert isinstance(s, NaiveIdentitySampler)
    assert (s.num_pids_per_batch, s.batch_size, s.rank, s.seed) == (4, 4, 1, 4)
    cfg.DATALOADER.SAMPLER_TRAIN = "RandomIdentity"
    with pytest.raises(
        ConfigError,
        match=r"DATALOADER.SAMPLER_TRAIN: .*'RandomIdentity'"
        r".*BalancedIdentitySampler, NaiveIdentitySampler, SetReWeightSampler, TrainingSampler",
    ):
        build_train_sampler(cfg, records, 0, 1, 0)


def test_images_ceil_epoch_length_chains_identity_passes() -> None:
    pids = _pids()  # 42 images of 10 identities
    s = NaiveIdentitySampler(pids, batch_size=8, num_instance=4, seed=1, epoch_length="images_ceil")
    assert s.batches_per_pass == 5 and s.num_batches == 6 == -(-len(pids) // 8)
    batches = [[pids[c[0]] for c in _chunks(b, 4)] for b in _chunks(list(s), 8)]
    assert len(batches) == 6
    first_pass = [pid for b in batches[:5] for pid in b]
    assert set(first_pass) == set(COUNTS)  # every identity visited in the first pass
    assert all(len(set(b)) == 2 for b in batches)
    one_of = r"must be one of \['images', 'images_ceil', 'identities'\], got 'steps'"
    with pytest.raises(ValueError, match=f"^epoch_length {one_of}"):
        NaiveIdentitySampler(pids, batch_size=8, num_instance=4, epoch_length="steps")
    cfg = get_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.EPOCH_LENGTH = 8, "steps"
    records = [Rec(f"{i}.jpg", pid, 0, "Synthetic") for i, pid in enumerate(pids)]
    with pytest.raises(ConfigError, match=f"^DATALOADER.EPOCH_LENGTH {one_of}"):
        build_train_sampler(cfg, records, rank=0, world_size=1, seed=0)


def test_epoch_lengths_when_an_identity_pass_is_longer_than_an_image_pass() -> None:
    # 20 identities of one image, P = 2: 10 batches per identity pass, 20 // 4 = 5 per image pass
    pids = list(range(20))
    images = NaiveIdentitySampler(pids, batch_size=4, num_instance=2, epoch_length="images")
    assert (images.num_batches, images.batches_per_pass, len(images)) == (5, 10, 20)
    batches = list(_chunks(list(images), 4))
    assert len(batches) == 5 and all(len({pids[i] for i in b}) == 2 for b in batches)
    # fastreid's count leaves the other half of the identities to later epochs
    assert len({pids[i] for i in images}) == 10
    ceil = NaiveIdentitySampler(pids, batch_size=4, num_instance=2, epoch_length="images_ceil")
    assert ceil.num_batches == ceil.batches_per_pass == 10


def test_images_epoch_length_is_fastreids_floor_division() -> None:
    pids = _pids()  # 42 images of 10 identities: 42 // 8 = 5 batches
    s = NaiveIdentitySampler(pids, batch_size=8, num_instance=4, seed=1, epoch_length="images")
    assert s.num_batches == 5 and len(s) == 40
    with pytest.raises(ValueError, match=r"^epoch_length 'images' gives #images // batch size ="):
        NaiveIdentitySampler(pids[:12], batch_size=16, num_instance=4, epoch_length="images")


def test_config_maps_every_sampler_key() -> None:
    records = [Rec(f"{i}.jpg", pid, 0, "Synthetic") for i, pid in enumerate(_pids())]
    cfg = get_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 8, 4
    assert cfg.DATALOADER.EPOCH_LENGTH == "images"  # fastreid's epoch by default
    s = build_train_sampler(cfg, records, rank=0, world_size=1, seed=9)
    assert isinstance(s, NaiveIdentitySampler)
    assert (s.num_instance, s.num_pids_per_batch, s.batch_size, s.seed) == (4, 2, 8, 9)
    assert s.num_batches == 5  # 42 images // 8 per batch: the "images" epoch
    assert list(s) == list(NaiveIdentitySampler(_pids(), 8, 4, 9, epoch_length="images"))


def test_config_errors_name_the_keys() -> None:
    records = [Rec(f"{i}.jpg", pid, 0, "Synthetic") for i, pid in enumerate(_pids())]
    cfg = get_cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 10, 4
    with pytest.raises(
        ValueError, match=r"\(10, SOLVER.IMS_PER_BATCH\) .* \(4, DATALOADER.NUM_INSTANCE\)"
    ):
        build_train_sampler(cfg, records, rank=0, world_size=1, seed=0)
    with pytest.raises(ValueError, match="the training set is empty"):
        build_train_sampler(get_cfg(), [], rank=0, world_size=1, seed=0)


def test_sampler_classes_say_whether_batches_are_identity_complete() -> None:
    assert sampler_class("NaiveIdentitySampler") is NaiveIdentitySampler
    assert NaiveIdentitySampler.identity_batches and not TrainingSampler.identity_batches
    assert NaiveIdentitySampler(_pids(), 16, 4).num_instance == 4
    with pytest.raises(
        ConfigError, match=r"^DATALOADER.SAMPLER_TRAIN: No object named 'PK' .*TrainingSampler"
    ):
        sampler_class("PK")


def test_the_registry_accepts_train_samplers_only() -> None:
    registry = Registry("SAMPLER", contract=check_sampler_class)
    with pytest.raises(TypeError, match="must be a TrainSampler subclass"):
        registry.register(Sampler)
