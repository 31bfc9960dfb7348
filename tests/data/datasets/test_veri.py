import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.veri import VeRi

FILES = {
    "image_train": [
        "0001_c001_00016450_0.jpg",
        "0001_c020_00016460_1.jpg",
        "0004_c005_00000001_0.jpg",
    ],
    "image_query": ["0002_c002_00030600_0.jpg"],
    "image_test": [
        "0002_c002_00030615_1.jpg",
        "0002_c014_00088888_0.jpg",
        "0006_c003_00000010_0.jpg",
    ],
}


def make(root: str, write_image: Callable[..., str], files: dict[str, list[str]] = FILES) -> None:
    for sub, names in files.items():
        os.makedirs(os.path.join(root, "VeRi", sub), exist_ok=True)
        for name in names:
            write_image(os.path.join(root, "VeRi", sub, name))


def test_parses_vehicle_and_camera(
    tmp_path: Path, write_image: Callable[..., str], quietly: Callable[..., Any]
) -> None:
    make(str(tmp_path), write_image)
    ds = quietly(lambda: VeRi(str(tmp_path)))
    assert [(r.pid, r.camid) for r in ds.train] == [(1, 0), (1, 19), (4, 4)]
    assert [(r.pid, r.camid) for r in ds.query] == [(2, 1)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(2, 1), (2, 13), (6, 2)]


def test_dataset_folder_as_root(
    tmp_path: Path, write_image: Callable[..., str], quietly: Callable[..., Any]
) -> None:
    make(str(tmp_path), write_image)
    ds = quietly(lambda: VeRi(str(tmp_path / "VeRi")))
    assert ds.dataset_dir == str(tmp_path / "VeRi") and len(ds.train) == 3


def test_counts_warning(tmp_path: Path, write_image: Callable[..., str]) -> None:
    make(str(tmp_path), write_image)
    with pytest.warns(
        DatasetCountWarning,
        match=r"train has 2 ids / 3 images \(official: 576 ids / 37,778 images\)",
    ):
        VeRi(str(tmp_path))


def test_camera_21_is_an_error(
    tmp_path: Path, write_image: Callable[..., str], quietly: Callable[..., Any]
) -> None:
    make(str(tmp_path), write_image, files={**FILES, "image_test": ["0002_c021_00030615_1.jpg"]})
    with pytest.raises(DatasetFormatError, match=r"camera 21 .* outside 1\.\.20"):
        quietly(lambda: VeRi(str(tmp_path)))


def test_missing_split_folder(tmp_path: Path, write_image: Callable[..., str]) -> None:
    make(str(tmp_path), write_image, files={k: v for k, v in FILES.items() if k != "image_query"})
    with pytest.raises(DatasetNotFoundError, match=r"VeRi/image_query"):
        VeRi(str(tmp_path))
