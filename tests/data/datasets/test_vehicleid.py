import functools
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.datasets import build_dataset
from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.vehicleid import (
    LargeVehicleID,
    MediumVehicleID,
    SmallVehicleID,
    VehicleID,
)

TRAIN = ["0000004 0002", "0000001 0001", "0000002 0001", "0000007 0002", "0000009 0005"]
# vehicle 11 has 5 images, 12 has 3, 13 has 1 (lines deliberately unsorted)
TEST = [
    "0000105 0011",
    "0000101 0011",
    "0000203 0012",
    "0000104 0011",
    "0000201 0012",
    "0000103 0011",
    "0000301 0013",
    "0000102 0011",
    "0000202 0012",
]


def make(
    root: str,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    sizes: tuple[int, ...] = (800, 1600, 2400, 13164),
) -> str:
    base = os.path.join(root, "VehicleID_V1.0")
    write_text(os.path.join(base, "train_test_split", "train_list.txt"), TRAIN)
    for size in sizes:
        write_text(os.path.join(base, "train_test_split", f"test_list_{size}.txt"), TEST)
    for line in TRAIN + TEST:
        write_image(os.path.join(base, "image", line.split()[0] + ".jpg"))
    return base


def reference_split(base: str, repeat: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    by_vid: dict[int, list[str]] = {}
    for line in TEST:
        image, vid = line.split()
        by_vid.setdefault(int(vid), []).append(os.path.join(base, "image", image + ".jpg"))
    rng = random.Random(repeat)
    gallery: list[tuple[str, int]] = []
    query: list[tuple[str, int]] = []
    for vehicle in sorted(by_vid):
        paths = sorted(by_vid[vehicle])
        k = rng.randrange(len(paths))
        gallery.append((paths[k], vehicle))
        query += [(p, vehicle) for j, p in enumerate(paths) if j != k]
    return sorted(query), sorted(gallery)


def test_train_records(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    ds = quietly(lambda: SmallVehicleID(str(tmp_path)))
    assert [(os.path.basename(r.path), r.pid, r.camid) for r in ds.train] == [
        ("0000001.jpg", 1, 0),
        ("0000002.jpg", 1, 0),
        ("0000004.jpg", 2, 0),
        ("0000007.jpg", 2, 0),
        ("0000009.jpg", 5, 0),
    ]
    assert all(r.path.startswith(os.path.join(base, "image")) for r in ds.train)


@pytest.mark.parametrize("repeat", [0, 1, 7])
def test_seeded_gallery_draw(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    repeat: int,
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    ds = quietly(lambda: SmallVehicleID(str(tmp_path), repeat=repeat))
    query, gallery = reference_split(base, repeat)
    assert [(r.path, r.pid) for r in ds.query] == query
    assert [(r.path, r.pid) for r in ds.gallery] == gallery
    assert sorted(r.pid for r in ds.gallery) == [11, 12, 13]  # one gallery image per vehicle
    assert {r.camid for r in ds.query} == {0} and {r.camid for r in ds.gallery} == {1}
    assert 13 not in {r.pid for r in ds.query}  # a single-image vehicle has no query


def test_draw_is_repeatable_and_repeats_differ(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    make(str(tmp_path), write_image, write_text)
    draws = [
        tuple(r.path for r in quietly(functools.partial(SmallVehicleID, str(tmp_path), k)).gallery)
        for k in range(10)
    ]
    again = tuple(r.path for r in quietly(lambda: SmallVehicleID(str(tmp_path), repeat=3)).gallery)
    assert again == draws[3]
    assert len(set(draws)) > 1


def test_sizes_read_their_own_list(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    cfg_for: Callable[..., CfgNode],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    with open(os.path.join(base, "train_test_split", "test_list_2400.txt"), "a") as f:
        f.write("0000401 0014\n0000402 0014\n")
    for line in ("0000401", "0000402"):
        open(os.path.join(base, "image", line + ".jpg"), "wb").close()
    small = quietly(lambda: build_dataset("SmallVehicleID", cfg_for(DATASETS__VEHICLEID__REPEAT=2)))
    medium = quietly(lambda: MediumVehicleID(str(tmp_path)))
    large = quietly(lambda: LargeVehicleID(str(tmp_path)))
    assert small.repeat == 2 and small.name == "SmallVehicleID"
    assert len({r.pid for r in small.gallery}) == len({r.pid for r in medium.gallery}) == 3
    assert len({r.pid for r in large.gallery}) == 4


def test_counts_warning_names_vehicle_counts(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    make(str(tmp_path), write_image, write_text)
    with pytest.warns(
        DatasetCountWarning,
        match=r"gallery has 3 ids / 3 images \(official: 1,600 ids / 1,600 images\)",
    ):
        MediumVehicleID(str(tmp_path))


def test_missing_test_list(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    make(str(tmp_path), write_image, write_text, sizes=(800,))
    with pytest.raises(DatasetNotFoundError, match=r"missing .*test_list_2400\.txt"):
        LargeVehicleID(str(tmp_path))


def test_bad_line(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    write_text(os.path.join(base, "train_test_split", "train_list.txt"), TRAIN + ["0000010"])
    with pytest.raises(DatasetFormatError, match=r"train_list\.txt, line 6"):
        quietly(lambda: SmallVehicleID(str(tmp_path)))


def test_negative_repeat_rejected(tmp_path: Path, cfg_for: Callable[..., CfgNode]) -> None:
    with pytest.raises(ValueError, match=r"^repeat must be >= 0, got -1$"):
        SmallVehicleID(str(tmp_path), repeat=-1)
    with pytest.raises(ConfigError, match=r"^DATASETS\.VEHICLEID\.REPEAT must be >= 0, got -1$"):
        build_dataset("SmallVehicleID", cfg_for(DATASETS__VEHICLEID__REPEAT=-1))


def test_vehicleid_trains_on_the_training_list_and_tests_on_the_whole_test_list(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    cfg_for: Callable[..., CfgNode],
) -> None:
    # fastreid's configs train on "VehicleID" and test on Small/Medium/LargeVehicleID
    base = make(str(tmp_path), write_image, write_text)
    whole = TEST + ["0000501 0015", "0000502 0015"]
    write_text(os.path.join(base, "train_test_split", "test_list_13164.txt"), whole)
    for line in ("0000501", "0000502"):
        write_image(os.path.join(base, "image", line + ".jpg"))
    ds = quietly(lambda: build_dataset("VehicleID", cfg_for(DATASETS__VEHICLEID__REPEAT=4)))
    assert isinstance(ds, VehicleID) and ds.name == "VehicleID" and ds.repeat == 4
    small = quietly(lambda: SmallVehicleID(str(tmp_path)))
    assert [(r.path, r.pid, r.camid) for r in ds.train] == [
        (r.path, r.pid, r.camid) for r in small.train
    ]
    assert {r.dataset for r in ds.train} == {"VehicleID"}
    assert sorted(r.pid for r in ds.gallery) == [11, 12, 13, 15]
    assert len(ds.query) == len(whole) - 4
    assert ds.official_counts() == {"train": (13164, 113346), "gallery": (13164, 13164)}


def test_vehicleid_needs_the_whole_test_list(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    make(str(tmp_path), write_image, write_text, sizes=(800, 1600, 2400))
    with pytest.raises(DatasetNotFoundError, match=r"missing .*test_list_13164\.txt"):
        VehicleID(str(tmp_path))
