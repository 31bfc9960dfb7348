import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.dukemtmc import DukeMTMC

FILES = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0010_c8_f0000012.jpg"],
    "query": ["0005_c2_f0046985.jpg"],
    "bounding_box_test": ["0005_c1_f0044158.jpg", "0005_c3_f0000777.jpg", "7140_c7_f0000003.jpg"],
}


def make(
    root: str,
    write_image: Callable[..., str],
    files: dict[str, list[str]] = FILES,
    folder: str = "DukeMTMC-reID",
) -> str:
    for sub, names in files.items():
        os.makedirs(os.path.join(root, folder, sub), exist_ok=True)
        for name in names:
            write_image(os.path.join(root, folder, sub, name))
    return os.path.join(root, folder)


def test_parses_pid_and_camera(
    tmp_path: Path, write_image: Callable[..., str], quietly: Callable[..., Any]
) -> None:
    base = make(str(tmp_path), write_image)
    ds = quietly(lambda: DukeMTMC(str(tmp_path)))
    assert [(os.path.basename(r.path), r.pid, r.camid) for r in ds.train] == [
        ("0001_c2_f0046182.jpg", 1, 1),
        ("0001_c5_f0051341.jpg", 1, 4),
        ("0010_c8_f0000012.jpg", 10, 7),
    ]
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 1)]
    # gallery-only identities (distractors with their own pids) stay identities
    assert [(r.pid, r.camid) for r in ds.gallery] == [(5, 0), (5, 2), (7140, 6)]
    assert all(
        r.dataset == "DukeMTMC" and r.path.startswith(base)
        for r in ds.train + ds.query + ds.gallery
    )
    assert ds.training_records(combine_all=True)[-1].pid == 7140


def test_official_counts_in_warning(tmp_path: Path, write_image: Callable[..., str]) -> None:
    make(str(tmp_path), write_image)
    with pytest.warns(
        DatasetCountWarning,
        match=r"gallery has 2 ids / 3 images \(official: 1,110 ids / 17,661 images\)",
    ):
        DukeMTMC(str(tmp_path))


def test_camera_9_is_an_error(
    tmp_path: Path, write_image: Callable[..., str], quietly: Callable[..., Any]
) -> None:
    make(str(tmp_path), write_image, files={**FILES, "query": ["0005_c9_f0046985.jpg"]})
    with pytest.raises(
        DatasetFormatError, match=r"camera 9 of .*query/0005_c9_f0046985\.jpg is outside 1\.\.8"
    ):
        quietly(lambda: DukeMTMC(str(tmp_path)))


def test_market_style_name_is_an_error(
    tmp_path: Path, write_image: Callable[..., str], quietly: Callable[..., Any]
) -> None:
    make(str(tmp_path), write_image, files={**FILES, "query": ["0005_c2s1_000451_03.jpg"]})
    with pytest.raises(
        DatasetFormatError,
        match=r"cannot parse the file name .*0005_c2s1_000451_03\.jpg.*0001_c2_f0046182\.jpg",
    ):
        quietly(lambda: DukeMTMC(str(tmp_path)))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"DukeMTMC-reID.*expected layout"):
        DukeMTMC(str(tmp_path))
