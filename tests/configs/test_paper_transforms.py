"""The ratio and unified-view configs moved from reid's old INPUT.CROP (resize, then random crop)
to INPUT.RESIZE_THEN_CROP when INPUT.CROP took fastreid's meaning: their pipelines must be exactly
the ones they had. The expected pipelines are written out step by step as they were built before
the move (torchvision steps, in that order, with those arguments)."""

import glob
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from reid.config import load_config
from reid.data.transforms import build_transforms
from reid.data.transforms.build import ToRGB
from reid.tables.record import default_papers_dir

PAPERS = default_papers_dir()
BILINEAR = v2.InterpolationMode.BILINEAR
MEAN_255 = [0.485 * 255, 0.456 * 255, 0.406 * 255]


def _old_train(size, resize, erasing_value):
    return v2.Compose(
        [
            ToRGB(),
            v2.ToImage(),
            v2.Resize(resize, interpolation=BILINEAR, antialias=True),
            v2.RandomCrop(size),
            v2.RandomHorizontalFlip(p=0.5),
            v2.ToDtype(torch.float32, scale=False),
            v2.RandomErasing(p=0.5, value=erasing_value),
            v2.ToPureTensor(),
        ]
    )


def _old_test(size):
    return v2.Compose(
        [
            ToRGB(),
            v2.ToImage(),
            v2.Resize(size, interpolation=BILINEAR, antialias=True),
            v2.ToDtype(torch.float32, scale=False),
            v2.ToPureTensor(),
        ]
    )


FAMILIES = {
    # Base-ratio.yml: SIZE_TRAIN 256x128, CROP.RESIZE 288x144, SIZE_TEST 288x144, zero erasing
    "ratio": (_old_train((256, 128), (288, 144), [0.0, 0.0, 0.0]), _old_test((288, 144))),
    # Base-unified.yml: SIZE_TRAIN 384x128, CROP.RESIZE 432x144, SIZE_TEST 384x128
    "unified": (_old_train((384, 128), (432, 144), MEAN_255), _old_test((384, 128))),
}
FILES = sorted(
    (family, path)
    for family in FAMILIES
    for path in glob.glob(os.path.join(PAPERS, family, "**", "*.yml"), recursive=True)
)


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(300, 140, 3), dtype=np.uint8))


def test_every_ratio_and_unified_config_is_covered():
    assert len([f for f in FILES if f[0] == "ratio"]) >= 25
    assert len([f for f in FILES if f[0] == "unified"]) >= 18


@pytest.mark.parametrize("family, path", FILES, ids=[os.path.relpath(p, PAPERS) for _, p in FILES])
def test_pipelines_are_the_ones_before_the_move(family, path):
    cfg = load_config(path)
    old_train, old_test = FAMILIES[family]
    train, test = build_transforms(cfg, is_train=True), build_transforms(cfg, is_train=False)
    assert [repr(s) for s in train.transforms] == [repr(s) for s in old_train.transforms]
    assert [repr(s) for s in test.transforms] == [repr(s) for s in old_test.transforms]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_seeded_outputs_are_the_ones_before_the_move(family):
    cfg = load_config(os.path.join(PAPERS, family, f"Base-{family}.yml"))
    old_train, old_test = FAMILIES[family]
    train, test = build_transforms(cfg, is_train=True), build_transforms(cfg, is_train=False)
    for seed in range(3):
        image = _image(seed)
        torch.manual_seed(seed)
        out = train(image)
        torch.manual_seed(seed)
        assert torch.equal(out, old_train(image))
        assert torch.equal(test(image), old_test(image))
