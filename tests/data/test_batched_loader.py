"""The decoded-image cache, the training loader of both backends, per-image seeding and the
prefetch thread."""

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config.schema import ConfigError
from reid.data.batch_augment import BatchAugment, CacheResize
from reid.data.build import (
    build_batched_train_loader,
    build_reid_train_loader,
    build_train_loader,
    read_image,
)
from reid.data.datasets.bases import DatasetCountWarning, Record
from reid.data.image_cache import open_image_cache
from reid.data.loader import TrainLoader, item_seed
from reid.data.samplers import NaiveIdentitySampler
from reid.data.transforms import TrainTransform
from reid.structures import BatchKeys

SIZE = (16, 8)


def _noise_image(path: Path, seed: int, size: tuple[int, int]) -> str:
    """An RGB PNG of random pixels, ``size`` = (height, width)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def records(tmp_path: Path) -> list[Record]:
    """12 images of 4 identities in 2 cameras, of different sizes."""
    folder = tmp_path / "images"
    folder.mkdir()
    return [
        Record(_noise_image(folder / f"{i:02d}.png", i, (20 + i, 9 + i % 3)), i // 3, i % 2, "t")
        for i in range(12)
    ]


def _resize(size: tuple[int, int] = SIZE) -> CacheResize:
    resize = v2.Resize(list(size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    return CacheResize(size, resize)


def _per_image_pixels(path: str, size: tuple[int, int] = SIZE) -> torch.Tensor:
    transform = v2.Compose([v2.ToImage(), _resize(size).transform])
    return transform(read_image(path)).as_subclass(torch.Tensor)


def test_the_cache_holds_the_per_image_pipelines_resized_pixels(records, tmp_path):
    cache = open_image_cache([r.path for r in records], _resize(), str(tmp_path / "cache"))
    assert len(cache) == 12 and cache.images.shape == (12, 3, *SIZE)
    for i, record in enumerate(records):
        assert torch.equal(
            torch.from_numpy(np.array(cache.images[i])), _per_image_pixels(record.path)
        )
    out = torch.zeros(3, 3, *SIZE, dtype=torch.uint8)
    assert cache.gather([5, 0, 5], out=out) is out
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], _per_image_pixels(records[0].path))


def test_the_cache_is_built_once_and_rebuilt_when_an_image_changes(records, tmp_path, caplog):
    paths, folder = [r.path for r in records], str(tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="reid.data.image_cache"):
        first = open_image_cache(paths, _resize(), folder)
        open_image_cache(paths, _resize(), folder)
    assert caplog.text.count("building it") == 1 and "not built yet" in caplog.text
    built = os.stat(first.path).st_mtime_ns

    caplog.clear()
    _noise_image(Path(paths[4]), 99, (30, 10))  # new pixels, new size and time
    stamp = os.stat(paths[4]).st_mtime_ns + 10**9
    os.utime(paths[4], ns=(stamp, stamp))
    with caplog.at_level(logging.INFO, logger="reid.data.image_cache"):
        again = open_image_cache(paths, _resize(), folder)
    assert "image files changed since it was built" in caplog.text
    assert os.stat(again.path).st_mtime_ns != built
    assert torch.equal(torch.from_numpy(np.array(again.images[4])), _per_image_pixels(paths[4]))

    other_size = open_image_cache(paths, _resize((8, 4)), folder)
    assert other_size.path != again.path and other_size.images.shape == (12, 3, 8, 4)
    assert sorted(f for f in os.listdir(folder) if ".tmp" in f) == []


def test_an_unreadable_image_names_the_file(records, tmp_path):
    Path(records[3].path).write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"cannot read image .*03\.png"):
        open_image_cache([r.path for r in records], _resize(), str(tmp_path / "cache"))
    os.remove(records[3].path)
    with pytest.raises(OSError, match=r"cannot read image .*03\.png"):
        open_image_cache([r.path for r in records], _resize(), str(tmp_path / "cache"))


def _sampler(records: list[Record], seed: int = 1) -> NaiveIdentitySampler:
    return NaiveIdentitySampler([r.pid for r in records], batch_size=4, num_instance=2, seed=seed)


def _epoch(loader: TrainLoader, epoch: int, seed: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    torch.manual_seed(seed)  # the trainer reseeds torch's generator every epoch
    return list(loader)


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[BatchKeys.IMAGES], y[BatchKeys.IMAGES])
        and torch.equal(x[BatchKeys.TARGETS], y[BatchKeys.TARGETS])
        and x[BatchKeys.PATHS] == y[BatchKeys.PATHS]
        for x, y in zip(a, b)
    )


TRANSFORM = dict(size=SIZE, flip_prob=0.5, padding=2, erasing_prob=0.5)


def test_batched_batches_follow_the_sampler_and_are_seeded_per_epoch(records, tmp_path):
    sampler = _sampler(records)
    loader = build_batched_train_loader(
        records, TrainTransform(**TRANSFORM), sampler, str(tmp_path / "cache")
    )
    first = _epoch(loader, 0, seed=7)
    assert len(first) == len(loader) == len(sampler) // 4
    order = [i for batch in sampler.global_batches() for i in batch]
    for b, batch in enumerate(first):
        want = order[b * 4 : (b + 1) * 4]
        assert batch[BatchKeys.IMAGES].shape == (4, 3, *SIZE)
        assert batch[BatchKeys.IMAGES].dtype == torch.float32
        assert batch[BatchKeys.TARGETS].tolist() == [records[i].pid for i in want]
        assert batch[BatchKeys.CAMIDS].tolist() == [records[i].camid for i in want]
        assert batch[BatchKeys.PATHS] == [records[i].path for i in want]
    assert _same(first, _epoch(loader, 0, seed=7))  # the same epoch draws the same
    assert not _same(first, _epoch(loader, 0, seed=8))  # another epoch seed, other draws


def test_batched_batches_are_the_augmentation_of_the_cached_images(records, tmp_path):
    transform = TrainTransform(**TRANSFORM)
    loader = build_batched_train_loader(records, transform, _sampler(records), str(tmp_path / "c"))
    batches = _epoch(loader, 0, seed=3)
    torch.manual_seed(3)
    epoch_seed = int(torch.randint(0, 2**62, (1,)).item())
    generator = torch.Generator().manual_seed(epoch_seed)
    _, augment = BatchAugment.from_transform(transform)
    for batch in batches:
        raw = torch.stack([_per_image_pixels(p) for p in batch[BatchKeys.PATHS]])
        assert torch.equal(batch[BatchKeys.IMAGES], augment(raw, generator))


@pytest.mark.parametrize("backend", ["per_image", "batched"])
def test_the_prefetch_thread_gives_the_batches_of_the_loop(records, tmp_path, backend):
    def make(prefetch: int) -> TrainLoader:
        transform = TrainTransform(**TRANSFORM)
        if backend == "batched":
            return build_batched_train_loader(
                records, transform, _sampler(records), str(tmp_path / "c"), prefetch=prefetch
            )
        return build_train_loader(
            records,
            transform,
            _sampler(records),
            num_workers=1 if prefetch else 0,
            prefetch=prefetch,
        )

    inline, threaded = make(0), make(2)
    for epoch in (0, 1):
        assert _same(_epoch(inline, epoch, seed=epoch), _epoch(threaded, epoch, seed=epoch))
    threaded.close()


def test_per_image_augmentations_depend_on_the_seed_not_on_the_processes(records):
    def make(workers: int, persistent: bool) -> TrainLoader:
        return build_train_loader(
            records,
            TrainTransform(**TRANSFORM),
            _sampler(records),
            num_workers=workers,
            persistent_workers=persistent,
        )

    reference = make(0, False)
    epochs = [_epoch(reference, e, seed=10 + e) for e in range(2)]
    assert not _same(epochs[0], epochs[1])
    for workers, persistent in ((2, False), (2, True)):
        loader = make(workers, persistent)
        for e in range(2):
            assert _same(_epoch(loader, e, seed=10 + e), epochs[e]), (workers, persistent, e)
    # The training process's own generator is left as it was by in-process loading.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(iter(reference))
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), expected)


def test_each_image_seed_mixes_the_epoch_seed_and_the_position():
    seeds = {item_seed(s, p) for s in range(50) for p in range(50)}
    assert len(seeds) == 2500 and all(0 <= s < 2**63 for s in seeds)


def test_a_prefetch_thread_over_in_process_loading_is_refused(records):
    with pytest.raises(ValueError, match="would draw augmentations from the generator"):
        build_train_loader(records, TrainTransform(size=SIZE), _sampler(records), prefetch=2)


def test_an_error_in_the_prefetch_thread_reaches_the_training_loop(records, tmp_path):
    loader = build_batched_train_loader(
        records, TrainTransform(size=SIZE), _sampler(records), str(tmp_path / "c"), prefetch=2
    )

    def broken(batch, device):
        raise RuntimeError("augmentation failed")

    loader.source.prepare = broken
    with pytest.raises(RuntimeError, match="augmentation failed"):
        _epoch(loader, 0, seed=0)


@pytest.fixture
def market_cfg(make_market: Callable[..., str], cfg_for: Callable[..., CfgNode], tmp_path):
    make_market()
    cfg = cfg_for(DATASETS__NAMES=["Market1501"], INPUT__SIZE_TRAIN=list(SIZE), SEED=3)
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 4, 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.MODEL.DEVICE = "cpu"
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    return cfg


def _loader(cfg: CfgNode) -> TrainLoader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        return build_reid_train_loader(cfg)[0]


def test_the_batched_backend_from_the_config(market_cfg):
    market_cfg.INPUT.BACKEND = "batched"
    market_cfg.INPUT.FLIP.ENABLED = True
    loader = _loader(market_cfg)
    assert loader.prefetch == 0  # "auto", on a CPU model: no thread competing with the step
    market_cfg.DATALOADER.PREFETCH_THREAD = "on"
    threaded = _loader(market_cfg)
    assert threaded.prefetch == 2  # the batched backend is safe with a thread
    threaded.close()
    batch = _epoch(loader, 0, seed=0)[0]
    assert batch[BatchKeys.IMAGES].shape == (4, 3, *SIZE)
    cache = os.path.join(market_cfg.OUTPUT_DIR, "image_cache")
    assert [f for f in os.listdir(cache) if f.endswith(".u8")]
    loader.close()

    market_cfg.INPUT.CACHE_DIR = os.path.join(market_cfg.OUTPUT_DIR, "shared")
    _loader(market_cfg).close()
    assert os.listdir(market_cfg.INPUT.CACHE_DIR)


def test_prefetch_thread_settings(market_cfg):
    assert _loader(market_cfg).prefetch == 0  # auto, per-image in this process: no thread
    market_cfg.DATALOADER.PREFETCH_THREAD = "on"
    with pytest.raises(ConfigError, match="DATALOADER.PREFETCH_THREAD 'on' with per-image"):
        _loader(market_cfg)
    market_cfg.DATALOADER.PREFETCH_THREAD = "sometimes"
    with pytest.raises(ConfigError, match="PREFETCH_THREAD must be one of"):
        _loader(market_cfg)
    market_cfg.DATALOADER.PREFETCH_THREAD = "auto"
    market_cfg.INPUT.BACKEND = "gpu"
    with pytest.raises(ConfigError, match="INPUT.BACKEND must be one of"):
        _loader(market_cfg)


@pytest.mark.parametrize(
    "block,settings,named",
    [
        ("AUTOAUG", {"PROB": 0.1}, "AutoAugment"),
        ("CJ", {"PROB": 0.5}, "ColorJitter"),
        ("AFFINE", {}, "RandomAffine"),
        ("AUGMIX", {"PROB": 0.5}, "AugMix"),
        ("RPT", {"PROB": 0.5}, "RandomPatch"),
    ],
)
def test_an_augmentation_the_batched_backend_lacks_is_a_config_error(
    market_cfg, block, settings, named
):
    market_cfg.INPUT.BACKEND = "batched"
    market_cfg.INPUT[block].ENABLED = True
    for key, value in settings.items():
        market_cfg.INPUT[block][key] = value
    with pytest.raises(ConfigError, match=rf"INPUT.BACKEND 'batched': .*{named}"):
        _loader(market_cfg)
