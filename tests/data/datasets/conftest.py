"""Fixture trees in the official layouts, written by the tests with tiny images."""
from __future__ import annotations

import os
import warnings
from typing import Callable, Iterable, Optional, Tuple

import cv2
import numpy as np
import pytest
from yacs.config import CfgNode

from reid.config import get_cfg
from reid.data.datasets.bases import DatasetCountWarning


def _write_image(path: str, value: int = 128, size: Tuple[int, int] = (8, 4)) -> str:
    """A tiny JPEG (or PNG, by extension) of one grey value."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.full((size[0], size[1], 3), value, np.uint8))
    return path


def _write_text(path: str, lines: Iterable[str]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def _quietly(build: Callable[[], object]) -> object:
    """Build a dataset while ignoring its count warnings (fixtures are far smaller than the originals)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        return build()


@pytest.fixture
def cfg_for(tmp_path) -> Callable[..., CfgNode]:
    """A config whose DATASETS.ROOT is ``root`` (default: tmp_path), plus KEY VALUE overrides."""

    def make(root: Optional[str] = None, **overrides: object) -> CfgNode:
        cfg = get_cfg()
        cfg.DATASETS.ROOT = str(root if root is not None else tmp_path)
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
def make_market(tmp_path) -> Callable[..., str]:
    """Writes a tiny Market-1501 tree; returns the dataset folder."""

    def make(parent: Optional[str] = None, folder: str = "Market-1501-v15.09.15", files=None) -> str:
        base = os.path.join(str(parent or tmp_path), folder)
        for sub, names in (files or MARKET_FILES).items():
            os.makedirs(os.path.join(base, sub), exist_ok=True)
            for name in names:
                _write_image(os.path.join(base, sub, name))
        return base

    return make


@pytest.fixture
def market_files() -> dict:
    """A fresh copy of MARKET_FILES to edit."""
    return {k: list(v) for k, v in MARKET_FILES.items()}


@pytest.fixture
def write_image() -> Callable[..., str]:
    return _write_image


@pytest.fixture
def write_text() -> Callable[..., str]:
    return _write_text


@pytest.fixture
def quietly() -> Callable[[Callable[[], object]], object]:
    return _quietly
