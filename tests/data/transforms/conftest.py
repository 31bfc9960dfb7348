"""Images and configs shared by the transform tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from yacs.config import CfgNode

from reid.config import get_cfg, merge_from_list


def noise_image(seed: int = 0, size: tuple[int, int] = (16, 32)) -> Image.Image:
    """A random RGB image of (width, height) ``size``."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def noise() -> Callable[..., Image.Image]:
    return noise_image


@pytest.fixture
def input_cfg() -> Callable[..., CfgNode]:
    """The default config at 32 x 16 with KEY VALUE overrides."""

    def make(*overrides: str) -> CfgNode:
        cfg = get_cfg()
        merge_from_list(cfg, ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]"])
        merge_from_list(cfg, list(overrides))
        return cfg

    return make
