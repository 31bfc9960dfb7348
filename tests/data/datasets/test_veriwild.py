"""VERI-Wild: a fixture tree in the official layout; fastreid's four names and their lists."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from yacs.config import CfgNode

from reid.data.datasets import build_dataset, build_train_records
from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.veriwild import LargeVeRiWild, MediumVeRiWild, SmallVeRiWild, VeRiWild

# vehicle_info.txt: "<vid>/<image id>;<camera>;<time>;<model>;<type>;<color>" after a header
INFO = [
    "id/image;camera;time;model;type;color",
    "00001/000001;35;2018-03-11 11:19:44;Chevrolet;SUV;white",
    "00001/000002;35;2018-03-11 11:19:46;Chevrolet;SUV;white",
    "00001/000003;7;2018-03-12 08:00:01;Chevrolet;SUV;white",
    "00002/000010;12;2018-03-13 09:10:11;Audi;sedan;black",
    "00002/000011;3;2018-03-13 10:10:11;Audi;sedan;black",
    "30000/200001;1;2018-03-20 10:00:00;VW;sedan;red",
    "30000/200002;2;2018-03-20 10:05:00;VW;sedan;red",
    "30000/200003;2;2018-03-20 10:06:00;VW;sedan;red",
    "30001/200010;4;2018-03-21 10:00:00;VW;van;blue",
    "30001/200011;5;2018-03-21 11:00:00;VW;van;blue",
]
TRAIN = ["00002/000011", "00001/000001", "00001/000003", "00001/000002", "00002/000010"]
TESTS = {
    3000: (["30000/200001"], ["30000/200002", "30000/200003"]),
    5000: (["30000/200001", "30001/200010"], ["30000/200002", "30001/200011.jpg"]),
    10000: (["30001/200010"], ["30001/200011", "30000/200002", "30000/200003"]),
}


def make(root: str, write_image: Callable[..., str], write_text: Callable[..., str]) -> str:
    base = os.path.join(root, "VERI-Wild")
    split = os.path.join(base, "train_test_split")
    write_text(os.path.join(split, "vehicle_info.txt"), INFO)
    write_text(os.path.join(split, "train_list.txt"), TRAIN)
    for size, (query, gallery) in TESTS.items():
        write_text(os.path.join(split, f"test_{size}_query.txt"), query)
        write_text(os.path.join(split, f"test_{size}.txt"), gallery)
    for line in INFO[1:]:
        write_image(os.path.join(base, "images", *line.split(";")[0].split("/")) + ".jpg")
    return base


def reference(base: str, lines: list[str]) -> list[tuple[str, int, int]]:
    """(path, vehicle id, camera) of list lines, sorted by path: the camera from INFO."""
    camera = {line.split(";")[0].split("/")[1]: int(line.split(";")[1]) for line in INFO[1:]}
    out = []
    for line in lines:
        vid, image = line.split("/")
        image = image.removesuffix(".jpg")
        out.append((os.path.join(base, "images", vid, image + ".jpg"), int(vid), camera[image]))
    return sorted(out)


@pytest.mark.parametrize(
    "name, size",
    [
        ("VeRiWild", 10000),
        ("SmallVeRiWild", 3000),
        ("MediumVeRiWild", 5000),
        ("LargeVeRiWild", 10000),
    ],
)
def test_each_name_reads_its_lists(
    name: str,
    size: int,
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    cfg_for: Callable[..., CfgNode],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    ds = quietly(lambda: build_dataset(name, cfg_for()))
    assert ds.name == name and ds.dataset_dir == base
    triples = [
        [(r.path, r.pid, r.camid) for r in split] for split in (ds.train, ds.query, ds.gallery)
    ]
    query, gallery = TESTS[size]
    assert triples == [reference(base, TRAIN), reference(base, query), reference(base, gallery)]
    assert {r.dataset for r in ds.train} == {name}


def test_official_counts_and_alternative_folder(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    make(str(tmp_path), write_image, write_text)
    os.rename(tmp_path / "VERI-Wild", tmp_path / "veri-wild")
    with pytest.warns(
        DatasetCountWarning,
        match=r"train has 2 ids / 5 images \(official: 30,671 ids / 277,797 images\); query has "
        r"2 ids / 2 images \(official: 5,000 ids / \? images\)",
    ):
        MediumVeRiWild(str(tmp_path))
    assert SmallVeRiWild.layouts[0].required[-2:] == (
        "train_test_split/test_3000_query.txt",
        "train_test_split/test_3000.txt",
    )


def test_training_records_relabel_vehicles_and_keep_cameras(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
    cfg_for: Callable[..., CfgNode],
) -> None:
    make(str(tmp_path), write_image, write_text)
    records, num_classes = quietly(
        lambda: build_train_records(cfg_for(DATASETS__NAMES=["VeRiWild"]))
    )
    assert num_classes == 2
    assert [(r.pid, r.camid) for r in records] == [(0, 35), (0, 35), (0, 7), (1, 12), (1, 3)]


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (("vehicle_info.txt", INFO + ["00003-000020;4"]), DatasetFormatError, r"vehicle_info\.txt, line 12"),
        (("vehicle_info.txt", INFO + ["00003/000020;cam4"]), DatasetFormatError, r"line 12: '00003/000020;cam4'"),
        (("train_list.txt", TRAIN + ["00009/000099"]), DatasetFormatError, r"image 000099 is not in .*vehicle_info\.txt"),
        (("train_list.txt", TRAIN + ["00002/000001"]), DatasetFormatError, r"image 000001 belongs to vehicle 00001"),
        (("train_list.txt", TRAIN + ["000001"]), DatasetFormatError, r"train_list\.txt, line 6: '000001'"),
    ],
)  # fmt: skip
def test_bad_files_are_errors_naming_file_and_line(
    edit: tuple[str, list[str]],
    error: type,
    message: str,
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    quietly: Callable[..., Any],
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    write_text(os.path.join(base, "train_test_split", edit[0]), edit[1])
    with pytest.raises(error, match=message):
        quietly(lambda: VeRiWild(str(tmp_path)))


def test_missing_list_names_the_file(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    base = make(str(tmp_path), write_image, write_text)
    os.remove(os.path.join(base, "train_test_split", "test_10000_query.txt"))
    with pytest.raises(DatasetNotFoundError, match=r"missing .*test_10000_query\.txt"):
        LargeVeRiWild(str(tmp_path))
