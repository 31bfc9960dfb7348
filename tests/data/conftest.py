"""Fixtures of the data tests: dataset trees in the official layouts, written with tiny images."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pytest
from yacs.config import CfgNode

from reid.config import get_cfg
from reid.data.datasets.bases import DatasetCountWarning

T = TypeVar("T")


def _write_image(path: str, value: int = 128, size: tuple[int, int] = (8, 4)) -> str:
    """A tiny JPEG (or PNG, by extension) of one grey value."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.full((size[0], size[1], 3), value, np.uint8))
    return path


def _write_text(path: str, lines: Iterable[str]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def _quietly(build: Callable[[], T]) -> T:
    """Build a dataset, ignoring its count warnings (the fixtures are far smaller than the
    originals)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        return build()


@pytest.fixture
def cfg_for(tmp_path: Path) -> Callable[..., CfgNode]:
    """A config whose DATASETS.ROOT is ``root`` (default: tmp_path), plus KEY VALUE overrides."""

    def make(root: str | None = None, **overrides: object) -> CfgNode:
        cfg = get_cfg()
        cfg.DATASETS.ROOT = str(root if root is not None else tmp_path)
        cfg.MODEL.DEVICE = "cpu"  # the training loader puts batches on the model's device
        for key, value in overrides.items():
            node = cfg
            parts = key.split("__")
            for part in parts[:-1]:
                node = node[part]
            node[parts[-1]] = value
        return cfg

    return make


# File names of a tiny Market-1501 copy; the reference parse is written out in the tests.
MARKET_FILES = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_077419_03.jpg",
        "0007_c6s3_083669_01.jpg",
        "0010_c1s1_001201_02.jpg",
    ],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c4s6_015641_00.jpg"],
    "bounding_box_test": [
        "-1_c1s1_000401_03.jpg",
        "-1_c5s1_000876_01.jpg",
        "0000_c1s1_000151_01.jpg",
        "0000_c6s4_001977_05.jpg",
        "0001_c2s1_001001_04.jpg",
        "0001_c1s1_001101_01.jpg",
        "0003_c5s2_015666_02.jpg",
        "0003_c4s6_015666_04.jpg",
    ],
}


@pytest.fixture
def make_market(tmp_path: Path) -> Callable[..., str]:
    """Writes a tiny Market-1501 tree; returns the dataset folder."""

    def make(
        parent: str | None = None,
        folder: str = "Market-1501-v15.09.15",
        files: dict[str, list[str]] | None = None,
    ) -> str:
        base = os.path.join(str(parent or tmp_path), folder)
        for sub, names in (files or MARKET_FILES).items():
            os.makedirs(os.path.join(base, sub), exist_ok=True)
            for name in names:
                _write_image(os.path.join(base, sub, name))
        return base

    return make


@pytest.fixture
def market_files() -> dict[str, list[str]]:
    """A fresh copy of MARKET_FILES to edit."""
    return {k: list(v) for k, v in MARKET_FILES.items()}


@pytest.fixture
def write_image() -> Callable[..., str]:
    return _write_image


@pytest.fixture
def write_text() -> Callable[..., str]:
    return _write_text


@pytest.fixture
def quietly() -> Callable[[Callable[[], T]], T]:
    return _quietly


DUKE_FILES = {
    "bounding_box_train": ["0005_c2_f0046182.jpg", "0001_c8_f0000001.jpg", "0005_c1_f0046999.jpg"],
    "query": ["0003_c1_f0000100.jpg"],
    "bounding_box_test": ["0003_c2_f0000200.jpg", "0009_c3_f0000300.jpg"],
}


@pytest.fixture
def two_datasets(
    make_market: Callable[..., str], write_image: Callable[..., str], tmp_path: Path
) -> str:
    """The tiny Market-1501 tree and a tiny DukeMTMC-reID tree under tmp_path; returns tmp_path."""
    make_market()
    for sub, names in DUKE_FILES.items():
        for name in names:
            write_image(os.path.join(str(tmp_path), "DukeMTMC-reID", sub, name))
    return str(tmp_path)
