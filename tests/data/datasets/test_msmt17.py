import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from yacs.config import CfgNode

from reid.data.datasets import build_dataset, build_train_records
from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.msmt17 import MSMT17

LISTS = {
    "list_train.txt": [
        "0000/0000_000_01_0303morning_0015_0.jpg 0",
        "0000/0000_001_05_0303morning_0016_0.jpg 0",
        "0001/0001_000_15_0303noon_0001_1.jpg 1",
    ],
    "list_val.txt": ["0002/0002_000_03_0303noon_0002_0.jpg 2"],
    "list_query.txt": [
        "0000/0000_000_01_0303morning_0018_0.jpg 0",
        "0001/0001_000_07_0303noon_0005_0.jpg 1",
    ],
    "list_gallery.txt": [
        "0000/0000_001_02_0303morning_0019_0.jpg 0",
        "0001/0001_004_11_0303afternoon_0003_0.jpg 1",
    ],
}
VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}


def make(
    root: str,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    version: str = "MSMT17_V1",
    lists: dict[str, list[str]] = LISTS,
    parent: str = "",
) -> str:
    base = os.path.join(root, parent, version)
    train_dir, test_dir = VERSIONS[version]
    for list_name, lines in lists.items():
        write_text(os.path.join(base, list_name), lines)
        image_dir = train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir
        for line in lines:
            write_image(os.path.join(base, image_dir, line.split()[0]))
    return base


@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_versions_train_val_and_offsets(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    version: str,
) -> None:
    base = make(str(tmp_path), write_image, write_text, version)
    train_dir, test_dir = VERSIONS[version]
    ds = quietly(lambda: MSMT17(str(tmp_path)))
    assert ds.dataset_dir == base
    assert [(os.path.relpath(r.path, base), r.pid, r.camid) for r in ds.train] == [
        (f"{train_dir}/0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
        (f"{train_dir}/0000/0000_001_05_0303morning_0016_0.jpg", 0, 4),
        (f"{train_dir}/0001/0001_000_15_0303noon_0001_1.jpg", 1, 14),
        (f"{train_dir}/0002/0002_000_03_0303noon_0002_0.jpg", 2, 2),
    ]
    # query / gallery labels 0, 1 shifted by max train/val label + 1 = 3
    assert [(r.pid, r.camid) for r in ds.query] == [(3, 0), (4, 6)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(3, 1), (4, 10)]
    assert all(r.path.startswith(os.path.join(base, test_dir)) for r in ds.query + ds.gallery)


def test_train_only_option(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    cfg_for: Callable[..., CfgNode],
) -> None:
    make(str(tmp_path), write_image, write_text)
    ds = quietly(lambda: build_dataset("MSMT17", cfg_for(DATASETS__MSMT17__TRAIN_ONLY=True)))
    assert [r.pid for r in ds.train] == [0, 0, 1]
    assert [r.pid for r in ds.query] == [3, 4]  # the offset still counts the val identities


def test_combineall_ids_do_not_collide(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    cfg_for: Callable[..., CfgNode],
) -> None:
    make(str(tmp_path), write_image, write_text)
    records, num_classes = quietly(
        lambda: build_train_records(cfg_for(DATASETS__NAMES=["MSMT17"], DATASETS__COMBINEALL=True))
    )
    assert num_classes == 5 and len(records) == 8


def test_official_counts_warning(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    make(str(tmp_path), write_image, write_text)
    with pytest.warns(
        DatasetCountWarning,
        match=r"train has 3 ids / 4 images \(official: 1,041 ids / 32,621 images\)",
    ):
        MSMT17(str(tmp_path))
    with pytest.warns(
        DatasetCountWarning,
        match=r"train has 2 ids / 3 images \(official: 1,041 ids / 30,248 images\)",
    ):
        MSMT17(str(tmp_path), train_only=True)


def test_nested_folder_accepted(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    base = make(str(tmp_path), write_image, write_text, "MSMT17_V2", parent="msmt17")
    assert quietly(lambda: MSMT17(str(tmp_path))).dataset_dir == base


def test_bad_line_names_file_and_line(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    write_text(
        os.path.join(base, "list_query.txt"),
        LISTS["list_query.txt"] + ["0003/0003_000_02_x_0001_0.jpg"],
    )
    with pytest.raises(DatasetFormatError, match=r"list_query\.txt, line 3"):
        quietly(lambda: MSMT17(str(tmp_path)))


def test_bad_camera_names_file_and_line(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    write_text(os.path.join(base, "list_gallery.txt"), ["0003/0003_000_16_0303noon_0001_0.jpg 3"])
    with pytest.raises(
        DatasetFormatError, match=r"camera 16 .*list_gallery\.txt, line 1 is outside 1\.\.15"
    ):
        quietly(lambda: MSMT17(str(tmp_path)))


def test_missing_list_file(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    os.remove(os.path.join(base, "list_val.txt"))
    with pytest.raises(
        DatasetNotFoundError, match=r"MSMT17_V1 is incomplete, missing .*list_val\.txt"
    ):
        MSMT17(str(tmp_path))
