import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.datasets import build_dataset
from reid.data.datasets import cuhk03 as cuhk03_module
from reid.data.datasets.bases import (
    DatasetCountWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    Record,
)
from reid.data.datasets.cuhk03 import CUHK03

# (camera pair, person) -> filled slots (0..4 = view 1, 5..9 = view 2), per kind
SLOTS = {
    "labeled": {
        (1, 1): [0, 1, 5, 6],
        (1, 2): [0, 5, 6],
        (1, 3): [0, 1, 5],
        (2, 1): [0, 5],
        (2, 2): [0, 1, 5, 6],
    },
    "detected": {
        (1, 1): [0, 5],
        (1, 2): [0, 1, 5],
        (1, 3): [0, 5, 6],
        (2, 1): [0, 1, 5],
        (2, 2): [1, 5],
    },
}
PERSONS = sorted(SLOTS["labeled"])
GLOBAL_ID = {key: i + 1 for i, key in enumerate(PERSONS)}  # 1-based rank of (pair, person)
# classic protocol: 20 test sets of 2 persons each, as [pair, person] rows
TESTSETS = [[PERSONS[i % 5], PERSONS[(i + 2) % 5]] for i in range(20)]


def pixels(kind: str, pair: int, person: int, slot: int) -> np.ndarray:
    """A distinct small RGB image (H x W x 3) per cell; sizes differ like real crops."""
    rng = np.random.default_rng(hash((kind, pair, person, slot)) % 2**32)
    return rng.integers(0, 256, size=(6 + slot % 3, 4 + pair, 3), dtype=np.uint8)


def name(pair: int, person: int, slot: int) -> str:
    return f"{pair}_{person:03d}_{1 if slot < 5 else 2}_{slot + 1:02d}.png"


def write_raw_mat(path: str) -> None:
    """cuhk-03.mat as MATLAB v7.3 writes it: HDF5, cells as datasets of object references
    (transposed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        counter = [0]

        def store(array: np.ndarray) -> Any:
            counter[0] += 1
            return refs.create_dataset(f"r{counter[0]}", data=array).ref

        for kind, slots in SLOTS.items():
            pair_refs = []
            for pair in (1, 2):
                persons = [p for (c, p) in PERSONS if c == pair]
                cells = np.empty(
                    (10, len(persons)), dtype=h5py.ref_dtype
                )  # MATLAB persons x 10, stored transposed
                for j, person in enumerate(persons):
                    for slot in range(10):
                        if slot in slots[(pair, person)]:
                            cells[slot, j] = store(
                                pixels(kind, pair, person, slot).T
                            )  # (H, W, 3) stored as (3, W, H)
                        else:
                            cells[slot, j] = store(np.zeros(2, np.uint64))  # MATLAB's empty []
                pair_refs.append(store(cells))
            f.create_dataset(kind, data=np.array([pair_refs], dtype=h5py.ref_dtype))
        test_refs = [
            store(np.array(rows, np.float64).T) for rows in TESTSETS
        ]  # 2 x n stored = n x 2 in MATLAB
        f.create_dataset("testsets", data=np.array([test_refs], dtype=h5py.ref_dtype))


def protocol(kind: str) -> tuple[list[str], list[int], list[int], list[int], list[int]]:
    """A 767/700-style protocol: persons of pair 1 but (1, 3) train; (1, 3), (2, 1), (2, 2) test,
    one query per view."""
    files = [name(c, p, s) for (c, p) in PERSONS for s in SLOTS[kind][(c, p)]]
    labels = [GLOBAL_ID[(int(n[0]), int(n[2:5]))] for n in files]
    train: list[int] = []
    query: list[int] = []
    gallery: list[int] = []
    for i, n in enumerate(files):
        key = (int(n[0]), int(n[2:5]))
        if key in ((1, 1), (1, 2)):
            train.append(i + 1)
        else:
            view = int(n[6])
            first_of_view = next(
                j
                for j, m in enumerate(files)
                if (int(m[0]), int(m[2:5])) == key and int(m[6]) == view
            )
            (query if first_of_view == i else gallery).append(i + 1)
    return files, labels, train, query, gallery


def _imread(path: str) -> np.ndarray:
    image = cv2.imread(path)
    assert image is not None, path
    return image


def write_protocol(path: str, kind: str) -> None:
    files, labels, train, query, gallery = protocol(kind)
    cell = np.empty((len(files), 1), dtype=object)
    for i, n in enumerate(files):
        cell[i, 0] = n

    def col(values: list[int]) -> np.ndarray:
        return np.array(values, np.float64).reshape(-1, 1)

    scipy.io.savemat(
        path,
        {
            "filelist": cell,
            "labels": col(labels),
            "train_idx": col(train),
            "query_idx": col(query),
            "gallery_idx": col(gallery),
            "camId": col([int(n[6]) for n in files]),
        },
    )


@pytest.fixture
def cuhk(tmp_path: Path) -> str:
    base = os.path.join(str(tmp_path), "cuhk03")
    write_raw_mat(os.path.join(base, "cuhk03_release", "cuhk-03.mat"))
    for kind in ("labeled", "detected"):
        write_protocol(os.path.join(base, f"cuhk03_new_protocol_config_{kind}.mat"), kind)
    return base


def rows(records: list[Record], base_dir: str) -> list[tuple[str, int, int]]:
    return [(os.path.relpath(r.path, base_dir), r.pid, r.camid) for r in records]


@pytest.mark.parametrize("kind", ["labeled", "detected"])
def test_new_protocol(cuhk: str, tmp_path: Path, quietly: Callable[..., Any], kind: str) -> None:
    ds = quietly(lambda: CUHK03(str(tmp_path), labeled=kind == "labeled"))
    images = os.path.join(cuhk, f"images_{kind}")
    files, labels, train, query, gallery = protocol(kind)

    def expect(idx: list[int]) -> list[tuple[str, int, int]]:
        return sorted((files[i - 1], labels[i - 1], int(files[i - 1][6]) - 1) for i in idx)

    assert rows(ds.train, images) == expect(train)
    assert rows(ds.query, images) == expect(query)
    assert rows(ds.gallery, images) == expect(gallery)
    assert {r.camid for r in ds.query} == {0, 1}
    # every image extracted exactly, RGB order kept, empty cells skipped
    assert sorted(os.listdir(images)) == sorted(files)
    for (pair, person), slots in SLOTS[kind].items():
        for slot in slots:
            png = _imread(os.path.join(images, name(pair, person, slot)))[:, :, ::-1]
            np.testing.assert_array_equal(png, pixels(kind, pair, person, slot))


def test_extracted_once_then_reused(
    cuhk: str, tmp_path: Path, quietly: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = quietly(lambda: CUHK03(str(tmp_path)))
    split_json = os.path.join(cuhk, "reid_split_new_labeled.json")
    with open(split_json) as f:
        data = json.load(f)
    assert data["protocol"] == "new" and data["kind"] == "labeled" and len(data["splits"]) == 1
    assert not [
        n for n in os.listdir(cuhk) if n.startswith(".")
    ]  # no temporary files or folders left

    def no_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("the .mat files must not be read again")

    monkeypatch.setattr(cuhk03_module.h5py, "File", no_reads)
    monkeypatch.setattr(cuhk03_module.scipy.io, "loadmat", no_reads)
    second = quietly(lambda: CUHK03(str(tmp_path)))
    assert (
        second.train == first.train
        and second.query == first.query
        and second.gallery == first.gallery
    )


def test_classic_splits(
    cuhk: str, tmp_path: Path, quietly: Callable[..., Any], cfg_for: Callable[..., CfgNode]
) -> None:
    for split_id in (0, 3, 19):
        cfg = cfg_for(DATASETS__CUHK03__CLASSIC_SPLIT=True, DATASETS__CUHK03__SPLIT_ID=split_id)
        ds = quietly(functools.partial(build_dataset, "CUHK03", cfg))
        images = os.path.join(cuhk, "images_labeled")
        test_keys = set(TESTSETS[split_id])
        expect_test = sorted(
            (name(c, p, s), GLOBAL_ID[(c, p)], 0 if s < 5 else 1)
            for (c, p) in test_keys
            for s in SLOTS["labeled"][(c, p)]
        )
        expect_train = sorted(
            (name(c, p, s), GLOBAL_ID[(c, p)], 0 if s < 5 else 1)
            for (c, p) in PERSONS
            if (c, p) not in test_keys
            for s in SLOTS["labeled"][(c, p)]
        )
        assert rows(ds.query, images) == rows(ds.gallery, images) == expect_test
        assert rows(ds.train, images) == expect_train
    assert os.path.isfile(os.path.join(cuhk, "reid_split_classic_labeled.json"))


def test_counts_warning(cuhk: str, tmp_path: Path) -> None:
    with pytest.warns(
        DatasetCountWarning,
        match=r"train has 2 ids / 7 images \(official: 767 ids / 7,368 images\)",
    ):
        CUHK03(str(tmp_path))


def test_classic_split_id_out_of_range(
    cuhk: str, tmp_path: Path, cfg_for: Callable[..., CfgNode]
) -> None:
    with pytest.raises(ValueError, match=r"split_id must be in 0\.\.19, got 20"):
        CUHK03(str(tmp_path), classic_split=True, split_id=20)
    cfg = cfg_for(DATASETS__CUHK03__CLASSIC_SPLIT=True, DATASETS__CUHK03__SPLIT_ID=20)
    with pytest.raises(ConfigError, match=r"DATASETS.CUHK03.SPLIT_ID must be in 0\.\.19, got 20"):
        build_dataset("CUHK03", cfg)


def test_labeled_key_selects_the_boxes(
    cuhk: str, quietly: Callable[..., Any], cfg_for: Callable[..., CfgNode]
) -> None:
    ds = quietly(lambda: build_dataset("CUHK03", cfg_for(DATASETS__CUHK03__LABELED=False)))
    assert (ds.labeled, ds.kind, ds.classic_split) == (False, "detected", False)
    assert {os.path.dirname(r.path) for r in ds.train} == {os.path.join(cuhk, "images_detected")}


def test_missing_protocol_file(cuhk: str, tmp_path: Path) -> None:
    os.remove(os.path.join(cuhk, "cuhk03_new_protocol_config_detected.mat"))
    with pytest.raises(
        DatasetNotFoundError,
        match=r"protocol file not found: .*cuhk03_new_protocol_config_detected\.mat.*CLASSIC_SPLIT",
    ):
        CUHK03(str(tmp_path), labeled=False)


def test_missing_raw_mat(tmp_path: Path) -> None:
    os.makedirs(tmp_path / "cuhk03")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"cuhk03 is incomplete, missing .*cuhk03/cuhk03_release/cuhk-03\.mat; "
        r"expected layout",
    ):
        CUHK03(str(tmp_path))


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    os.makedirs(path.parent)
    path.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DatasetFormatError, match=r"cannot read .*cuhk-03\.mat as MATLAB v7\.3"):
        CUHK03(str(tmp_path))
    assert sorted(os.listdir(tmp_path / "cuhk03")) == [
        "cuhk03_release"
    ]  # the temporary folder was removed


def test_broken_split_json(cuhk: str, tmp_path: Path, quietly: Callable[..., Any]) -> None:
    quietly(lambda: CUHK03(str(tmp_path)))
    with open(os.path.join(cuhk, "reid_split_new_labeled.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(
        DatasetFormatError, match=r"reid_split_new_labeled\.json is broken .*delete it"
    ):
        CUHK03(str(tmp_path))


def test_missing_extracted_image(cuhk: str, tmp_path: Path, quietly: Callable[..., Any]) -> None:
    quietly(lambda: CUHK03(str(tmp_path)))
    os.remove(os.path.join(cuhk, "images_labeled", "1_001_1_01.png"))
    with pytest.raises(DatasetNotFoundError, match=r"1_001_1_01\.png .* is missing; delete"):
        CUHK03(str(tmp_path))


def test_concurrent_extraction_keeps_the_first(
    cuhk: str, tmp_path: Path, quietly: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process finishes images_labeled/ while this one extracts: its copy is kept, ours
    discarded."""
    real = cuhk03_module._iter_raw_images
    images = os.path.join(cuhk, "images_labeled")

    def racing(mat: Any, kind: str, path: str) -> Iterator[tuple[int, int, int, np.ndarray]]:
        yield from real(mat, kind, path)
        os.makedirs(images)
        for n in protocol("labeled")[0]:
            open(os.path.join(images, n), "wb").close()

    monkeypatch.setattr(cuhk03_module, "_iter_raw_images", racing)
    ds = quietly(lambda: CUHK03(str(tmp_path)))
    assert os.path.getsize(ds.train[0].path) == 0  # the other process's files
    assert not [n for n in os.listdir(cuhk) if n.startswith(".images")]
