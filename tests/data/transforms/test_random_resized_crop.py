"""Random resized crop (fastreid's INPUT.CROP): train crop after the resize, test centre crop."""

import math
from collections.abc import Callable

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.transforms import EvalTransform, RandomResizedCrop, TrainTransform, build_transforms


def test_crops_area_and_aspect_within_scale_and_ratio(noise: Callable[..., Image.Image]) -> None:
    image = F.pil_to_tensor(noise(1, size=(64, 128)))  # 128 x 64
    step = RandomResizedCrop(size=(24, 12), scale=(0.2, 0.6), ratio=(0.5, 1.0))
    torch.manual_seed(0)
    areas, ratios = [], []
    for _ in range(200):
        p = step.make_params([image])
        areas.append(p["height"] * p["width"] / (128 * 64))
        ratios.append(p["width"] / p["height"])
    assert min(areas) >= 0.19 and max(areas) <= 0.61 and max(areas) - min(areas) > 0.3
    assert min(ratios) >= 0.48 and max(ratios) <= 1.03
    # the log aspect ratio spreads over log(0.5)..log(1)
    logs = sorted(math.log(r) for r in ratios)
    assert logs[20] < -0.5 and logs[-20] > -0.2


def test_output_is_the_resized_random_window(noise: Callable[..., Image.Image]) -> None:
    image = F.pil_to_tensor(noise(2, size=(32, 64)))
    step = RandomResizedCrop(size=(20, 10), interpolation="bilinear")
    for seed in range(5):
        torch.manual_seed(seed)
        out = step(image)
        torch.manual_seed(seed)
        p = step.make_params([image])
        window = F.resized_crop(
            image, p["top"], p["left"], p["height"], p["width"], [20, 10],
            interpolation=F.InterpolationMode.BILINEAR, antialias=True,
        )  # fmt: skip
        assert out.shape == (3, 20, 10) and torch.equal(out, window)


def test_train_and_test_pipelines_of_the_keys(
    noise: Callable[..., Image.Image], input_cfg: Callable[..., CfgNode]
) -> None:
    cfg = input_cfg(
        "INPUT.CROP.ENABLED", "True", "INPUT.CROP.SIZE", "[24, 12]",
        "INPUT.CROP.SCALE", "[0.3, 0.9]", "INPUT.CROP.RATIO", "[0.4, 0.6]",
        "INPUT.INTERPOLATION", "bilinear",
        "INPUT.PADDING.ENABLED", "True", "INPUT.PADDING.SIZE", "4",
    )  # fmt: skip
    train = build_transforms(cfg, is_train=True)
    names = [type(s).__name__ for s in train.transforms]
    assert names[2:6] == ["Resize", "RandomResizedCrop", "Pad", "RandomCrop"]
    expected = RandomResizedCrop((24, 12), (0.3, 0.9), (0.4, 0.6), "bilinear")
    assert repr(train.transforms[3]) == repr(expected)
    # the padding's random crop brings the 24 x 12 crop back to SIZE_TRAIN, as in fastreid
    assert train(noise(3)).shape == (3, 32, 16)
    test = build_transforms(cfg, is_train=False)
    assert repr(test) == repr(EvalTransform((32, 16), "bilinear", center_crop=(24, 12)))
    image = noise(4, size=(20, 40))
    resized = F.resize(
        F.pil_to_tensor(image), [32, 16], interpolation=F.InterpolationMode.BILINEAR, antialias=True
    )
    assert torch.equal(test(image), F.center_crop(resized, [24, 12]).float())
    without_padding = build_transforms(input_cfg("INPUT.CROP.ENABLED", "True"), is_train=True)
    assert without_padding(noise(5)).shape == (3, 224, 224)  # fastreid's default CROP.SIZE


def test_square_size_and_defaults(input_cfg: Callable[..., CfgNode]) -> None:
    cfg = input_cfg("INPUT.CROP.ENABLED", "True", "INPUT.CROP.SIZE", "[20]")
    step = RandomResizedCrop(cfg)
    assert step.size == (20, 20)
    assert step.scale == (0.16, 1.0) and step.ratio == (0.75, 4 / 3)
    assert step.interpolation == F.InterpolationMode.BICUBIC  # INPUT.INTERPOLATION's default
    assert repr(build_transforms(input_cfg(), is_train=False)) == repr(EvalTransform((32, 16)))


@pytest.mark.parametrize(
    "overrides, is_train, message",
    [
        (["INPUT.CROP.SCALE", "[0.5, 0.2]"], True, r"^INPUT\.CROP\.SCALE must be \[min, max\]"),
        (["INPUT.CROP.SCALE", "[0.5, 1.5]"], True, r"^INPUT\.CROP\.SCALE must lie in \(0, 1\]"),
        (["INPUT.CROP.RATIO", "[0.0, 1.0]"], True, r"^INPUT\.CROP\.RATIO must be \[min, max\]"),
        (["INPUT.CROP.SIZE", "[1, 2, 3]"], True, r"^INPUT\.CROP\.SIZE must be \[height, width\]"),
        (["INPUT.CROP.SIZE", "[0, 2]"], False, r"^INPUT\.CROP\.SIZE must be \[height, width\]"),
    ],
)
def test_errors_name_the_key(
    overrides: list[str], is_train: bool, message: str, input_cfg: Callable[..., CfgNode]
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_transforms(input_cfg("INPUT.CROP.ENABLED", "True", *overrides), is_train=is_train)


def test_padding_must_reach_the_train_size() -> None:
    with pytest.raises(ValueError, match=r"^padding 2 leaves the \[20, 10\] images smaller"):
        TrainTransform(size=(32, 16), random_resized_crop=RandomResizedCrop((20, 10)), padding=2)
