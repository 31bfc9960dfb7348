import os
import warnings
from collections.abc import Callable

import pytest
from yacs.config import CfgNode

from reid.data.datasets import DATASET_REGISTRY, ImageDataset, build_train_records
from reid.data.datasets.bases import DatasetCountWarning, Record
from reid.data.datasets.build import check_dataset_class
from reid.utils.registry import Registry, RegistryKeyError


def train_records(cfg: CfgNode) -> tuple[list[Record], int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        return build_train_records(cfg)


def test_all_datasets_registered() -> None:
    assert set(DATASET_REGISTRY.names()) == {
        "Market1501",
        "DukeMTMC",
        "CUHK03",
        "MSMT17",
        "VeRi",
        "VehicleID",
        "SmallVehicleID",
        "MediumVehicleID",
        "LargeVehicleID",
        "VeRiWild",
        "SmallVeRiWild",
        "MediumVeRiWild",
        "LargeVeRiWild",
        "Synthetic",
        "Custom",
    }


def test_unknown_dataset_lists_registered_names(cfg_for: Callable[..., CfgNode]) -> None:
    with pytest.raises(RegistryKeyError, match=r"No object named 'Market' .*Market1501"):
        build_train_records(cfg_for(DATASETS__NAMES=["Market"]))


def test_single_dataset_relabelled_in_sorted_order(
    two_datasets: str, cfg_for: Callable[..., CfgNode]
) -> None:
    records, num_classes = train_records(cfg_for(DATASETS__NAMES=["Market1501"]))
    assert num_classes == 3
    # Market train pids 2, 2, 7, 7, 10 (sorted file order) -> 0, 0, 1, 1, 2; cameras unchanged
    assert [r.pid for r in records] == [0, 0, 1, 1, 2]
    assert [r.camid for r in records] == [0, 1, 2, 5, 0]
    assert [os.path.basename(r.path)[:4] for r in records] == [
        "0002",
        "0002",
        "0007",
        "0007",
        "0010",
    ]


def test_combined_datasets_keep_distinct_identities(
    two_datasets: str, cfg_for: Callable[..., CfgNode]
) -> None:
    records, num_classes = train_records(cfg_for(DATASETS__NAMES=["Market1501", "DukeMTMC"]))
    assert num_classes == 5
    market = [r for r in records if r.dataset == "Market1501"]
    duke = [r for r in records if r.dataset == "DukeMTMC"]
    assert records == market + duke
    assert [r.pid for r in market] == [0, 0, 1, 1, 2]
    # Duke files sorted: 0001_c8, 0005_c1, 0005_c2 -> pids 1, 5, 5 -> labels 3, 4, 4
    assert [(os.path.basename(r.path), r.pid) for r in duke] == [
        ("0001_c8_f0000001.jpg", 3),
        ("0005_c1_f0046999.jpg", 4),
        ("0005_c2_f0046182.jpg", 4),
    ]
    # Duke cameras shifted past Market's (max camid 5 -> offset 6)
    assert [r.camid for r in duke] == [7 + 6, 0 + 6, 1 + 6]


def test_order_of_names_decides_the_labels(
    two_datasets: str, cfg_for: Callable[..., CfgNode]
) -> None:
    records, _ = train_records(cfg_for(DATASETS__NAMES=["DukeMTMC", "Market1501"]))
    assert [r.pid for r in records if r.dataset == "DukeMTMC"] == [0, 1, 1]
    assert [r.pid for r in records if r.dataset == "Market1501"] == [2, 2, 3, 3, 4]


def test_combineall_adds_query_and_gallery_without_distractors(
    two_datasets: str, cfg_for: Callable[..., CfgNode]
) -> None:
    records, num_classes = train_records(
        cfg_for(DATASETS__NAMES=["Market1501"], DATASETS__COMBINEALL=True)
    )
    # train pids 2, 7, 10 + query/gallery pids 1, 3 (distractors 0000 and junk -1 excluded)
    assert num_classes == 5
    assert len(records) == 5 + 2 + 4
    names = [os.path.basename(r.path) for r in records]
    assert not any(n.startswith(("0000_", "-1_")) for n in names)
    assert len(set(r.path for r in records)) == len(records)
    label = {int(os.path.basename(r.path)[:4]): r.pid for r in records}
    assert label == {1: 0, 2: 1, 3: 2, 7: 3, 10: 4}


def test_duplicate_training_names_are_an_error(
    two_datasets: str, cfg_for: Callable[..., CfgNode]
) -> None:
    with pytest.raises(ValueError, match=r"DATASETS.NAMES lists Market1501 more than once"):
        build_train_records(cfg_for(DATASETS__NAMES=["Market1501", "Market1501"]))


def test_summary_is_logged(
    two_datasets: str, cfg_for: Callable[..., CfgNode], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="reid.data.datasets"):
        train_records(cfg_for(DATASETS__NAMES=["Market1501"]))
    text = caplog.text
    assert (
        "=> Market1501 loaded from" in text and "| train   |     3 |        5 |         4 |" in text
    )
    assert "Training set: 5 images of 3 identities from Market1501" in text


def test_only_cuhk03_is_scored_with_the_single_gallery_shot_cmc() -> None:
    flagged = {name for name, cls in DATASET_REGISTRY if cls.single_gallery_shot_cmc}
    assert flagged == {"CUHK03"}


def test_the_registry_accepts_image_datasets_only() -> None:
    registry = Registry("DATASET", contract=check_dataset_class)
    with pytest.raises(TypeError, match="must be an ImageDataset subclass, got <class 'dict'>"):
        registry.register(dict)

    class Nameless(ImageDataset):
        def load(self) -> tuple[list[Record], list[Record], list[Record]]:
            return [], [], []

    with pytest.raises(TypeError, match="dataset Nameless must set name"):
        registry.register(Nameless)
