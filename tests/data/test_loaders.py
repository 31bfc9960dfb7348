"""The loaders: plain construction, and the config path the engine calls."""

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.build import (
    InferenceSampler,
    ReidDataset,
    build_inference_loader,
    build_reid_test_loader,
    build_reid_train_loader,
    build_train_loader,
    check_test_set,
    read_image,
)
from reid.data.datasets.bases import DatasetCountWarning, Record
from reid.data.datasets.market1501 import Market1501
from reid.data.samplers import NaiveIdentitySampler
from reid.data.transforms import EvalTransform, TrainTransform
from reid.structures import BatchKeys

SIZE = (16, 8)


@pytest.fixture
def market(
    make_market: Callable[..., str], tmp_path: Path, quietly: Callable[..., Any]
) -> Market1501:
    make_market()
    return quietly(lambda: Market1501(str(tmp_path)))


def _records(loader: DataLoader) -> list[Record]:
    dataset = loader.dataset
    assert isinstance(dataset, ReidDataset)
    return dataset.records


def test_train_loader_cuts_the_samplers_batches(market: Market1501) -> None:
    records = [Record(r.path, i // 2, r.camid, r.dataset) for i, r in enumerate(market.train)]
    sampler = NaiveIdentitySampler([r.pid for r in records], batch_size=4, num_instance=2, seed=1)
    loader = build_train_loader(records, TrainTransform(size=SIZE), sampler)
    batches = list(loader)
    assert loader.batch_size == sampler.batch_size == 4 and loader.sampler is sampler
    assert len(batches) == len(loader) == len(sampler) // 4 == 2
    indices = [i for batch in sampler.global_batches() for i in batch]
    for b, batch in enumerate(batches):
        assert set(batch) == {
            BatchKeys.IMAGES,
            BatchKeys.TARGETS,
            BatchKeys.CAMIDS,
            BatchKeys.PATHS,
        }
        assert batch[BatchKeys.IMAGES].shape == (4, 3, *SIZE)
        want = indices[b * 4 : (b + 1) * 4]
        assert batch[BatchKeys.TARGETS].tolist() == [records[i].pid for i in want]
        assert batch[BatchKeys.PATHS] == [records[i].path for i in want]


def test_inference_loader_reads_query_then_gallery(market: Market1501) -> None:
    loader, num_query = build_inference_loader(market, EvalTransform(size=SIZE), batch_size=3)
    assert num_query == 2
    paths = [p for batch in loader for p in batch[BatchKeys.PATHS]]
    assert paths == [r.path for r in market.query + market.gallery]
    camids = torch.cat([batch[BatchKeys.CAMIDS] for batch in loader]).tolist()
    assert camids == [r.camid for r in market.query + market.gallery]


def test_inference_loader_splits_across_ranks_in_order(market: Market1501) -> None:
    shares = [
        build_inference_loader(market, EvalTransform(size=SIZE), 3, rank=r, world_size=3)[0]
        for r in range(3)
    ]
    assert [len(list(loader.sampler)) for loader in shares] == [3, 3, 2]
    paths = [p for loader in shares for batch in loader for p in batch[BatchKeys.PATHS]]
    assert paths == [r.path for r in market.query + market.gallery]
    assert list(InferenceSampler(8, 2, 3)) == [6, 7]


@pytest.mark.parametrize("split", ["query", "gallery"])
def test_empty_test_split_is_an_error_naming_dataset_and_folder(
    market: Market1501, split: str
) -> None:
    setattr(market, split, [])
    with pytest.raises(ValueError) as err:
        build_inference_loader(market, EvalTransform(size=SIZE), batch_size=4)
    assert str(err.value) == (
        f"test dataset Market1501 ({market.dataset_dir}) has an empty {split} split: there is "
        f"nothing to evaluate. Put its {split} images in place, or remove Market1501 from "
        f"DATASETS.TESTS"
    )


def test_test_loaders_in_order(two_datasets: str, cfg_for: Callable[..., CfgNode]) -> None:
    cfg = cfg_for(DATASETS__TESTS=["DukeMTMC", "Market1501"], INPUT__SIZE_TEST=list(SIZE))
    cfg.DATALOADER.NUM_WORKERS = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        loaders = [build_reid_test_loader(cfg, name) for name in cfg.DATASETS.TESTS]
    test_sets = [_records(loader) for loader, _ in loaders]
    assert [{r.dataset for r in records} for records in test_sets] == [
        {"DukeMTMC"},
        {"Market1501"},
    ]
    counts = [
        (num_query, len(records) - num_query) for records, (_, num_query) in zip(test_sets, loaders)
    ]
    assert counts == [(1, 2), (2, 6)]
    images = next(iter(loaders[1][0]))[BatchKeys.IMAGES]
    assert images.shape == (8, 3, *SIZE)  # TEST.IMS_PER_BATCH 128 > 8 images: one batch


def test_test_set_with_empty_query_is_an_error(
    make_market: Callable[..., str],
    market_files: dict[str, list[str]],
    cfg_for: Callable[..., CfgNode],
) -> None:
    market_files["query"] = []
    make_market(files=market_files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        for check in (build_reid_test_loader, check_test_set):  # the trainer checks first
            with pytest.raises(
                ValueError, match=r"test dataset Market1501 .* has an empty query split"
            ):
                check(cfg_for(DATASETS__TESTS=["Market1501"]), "Market1501")


@pytest.mark.parametrize("build", [build_reid_train_loader, build_reid_test_loader])
def test_negative_num_workers_is_an_error_naming_the_key(
    build: Callable[..., Any], cfg_for: Callable[..., CfgNode]
) -> None:
    cfg = cfg_for(DATASETS__NAMES=["Market1501"])  # not read: the key is checked first
    cfg.DATALOADER.NUM_WORKERS = -1
    with pytest.raises(ConfigError) as err:
        build(cfg) if build is build_reid_train_loader else build(cfg, "Market1501")
    assert str(err.value) == (
        "DATALOADER.NUM_WORKERS must be >= 0 (0 loads the images in the main process), got -1"
    )


def test_an_image_over_the_pixel_limit_is_an_error_naming_it(
    market: Market1501, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PIL refuses images of more than 2 * MAX_IMAGE_PIXELS pixels as decompression bombs; the
    # fixture's 8 x 4 images are over a limit of 10.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    path = market.train[0].path
    with pytest.raises(OSError) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(f"cannot read image {path}: it has more pixels than PIL accepts (")
    assert "exceeds limit of 20 pixels" in message
    assert message.endswith("shrink the image or remove it from the dataset")


def test_train_loader_from_config(
    make_market: Callable[..., str], tmp_path: Path, cfg_for: Callable[..., CfgNode]
) -> None:
    make_market()
    cfg = cfg_for(DATASETS__NAMES=["Market1501"], INPUT__SIZE_TRAIN=list(SIZE), SEED=3)
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 4, 2
    cfg.DATALOADER.NUM_WORKERS = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        loader, num_classes = build_reid_train_loader(cfg)
    sampler = loader.sampler
    assert num_classes == 3
    assert isinstance(sampler, NaiveIdentitySampler) and sampler.seed == 3
    assert (sampler.num_instance, sampler.batch_size, loader.batch_size) == (2, 4, 4)
    batch = next(iter(loader))
    assert batch[BatchKeys.IMAGES].shape == (4, 3, *SIZE)
    assert len(set(batch[BatchKeys.TARGETS].tolist())) == 2  # P = 2 identities x K = 2
