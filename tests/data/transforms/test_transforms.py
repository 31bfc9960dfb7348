"""Train and test transforms: shapes, value range, flip, pad + crop, crop, erasing, errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from reid.config import ConfigError, get_cfg, merge_from_list
from reid.data.transforms import EvalTransform, TrainTransform, build_transforms

H, W = 32, 16


def _image(seed: int = 0, size: tuple[int, int] = (20, 40)) -> Image.Image:
    """A random RGB image (width, height) = size: asymmetric, so a flip shows."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _windows(big: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether ``out`` equals some H x W window of ``big``."""
    for dy in range(big.shape[1] - out.shape[1] + 1):
        for dx in range(big.shape[2] - out.shape[2] + 1):
            if torch.equal(big[:, dy : dy + out.shape[1], dx : dx + out.shape[2]], out):
                return True
    return False


def test_test_transform_shape_dtype_range_and_determinism() -> None:
    t = EvalTransform(size=(H, W))
    img = _image()
    out = t(img)
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, H, W)
    assert 0 <= out.min() and out.max() <= 255 and out.max() > 1
    assert torch.equal(out, t(img))
    ref = F.resize(
        F.pil_to_tensor(img), [H, W], interpolation=F.InterpolationMode.BICUBIC, antialias=True
    ).float()
    assert torch.equal(out, ref)
    assert not torch.equal(EvalTransform(size=(H, W), interpolation="bilinear")(img), out)


def test_no_normalisation_happens() -> None:
    img = Image.new("RGB", (20, 40), (200, 100, 50))
    for t in (TrainTransform(size=(H, W), flip_prob=0.5), EvalTransform(size=(H, W))):
        out = t(img)
        assert torch.equal(out, torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1).expand(3, H, W))


def test_grayscale_input_gives_three_channels() -> None:
    out = EvalTransform(size=(H, W))(Image.new("L", (16, 32), 77))
    assert out.shape == (3, H, W) and torch.all(out == 77)


def test_flip_with_probability_one_and_zero() -> None:
    img = _image(1)
    plain = EvalTransform(size=(H, W))(img)
    assert torch.equal(TrainTransform(size=(H, W), flip_prob=1.0)(img), plain.flip(-1))
    assert torch.equal(TrainTransform(size=(H, W), flip_prob=0.0)(img), plain)
    assert torch.equal(TrainTransform(size=(H, W))(img), plain)


def test_padding_and_random_crop_keep_size_and_shift_the_content() -> None:
    img = _image(2)
    plain = EvalTransform(size=(H, W))(img)
    padded = torch.nn.functional.pad(plain, (4, 4, 4, 4))
    t = TrainTransform(size=(H, W), padding=4)
    outs = [t(img) for _ in range(8)]
    assert all(o.shape == (3, H, W) for o in outs)
    assert all(_windows(padded, o) for o in outs)
    assert any(not torch.equal(o, plain) for o in outs)


def test_resize_then_crops_then_crops_to_the_train_size() -> None:
    img = _image(3)
    big = EvalTransform(size=(36, 18))(img)
    t = TrainTransform(size=(H, W), resize_then_crop=(36, 18))
    outs = [t(img) for _ in range(6)]
    assert all(o.shape == (3, H, W) and _windows(big, o) for o in outs)
    assert len({tuple(o.flatten().tolist()) for o in outs}) > 1


def test_random_erasing_fills_a_rectangle_with_the_value() -> None:
    img = Image.new("RGB", (W, H), (200, 200, 200))
    t = TrainTransform(size=(H, W), erasing_prob=1.0, erasing_value=(1.0, 2.0, 3.0))
    for _ in range(5):
        out = t(img)
        erased = out[0] != 200
        assert erased.any()
        rows, cols = erased.any(dim=1).nonzero().flatten(), erased.any(dim=0).nonzero().flatten()
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        assert erased[box].all() and erased.sum() == erased[box].numel()
        for c, value in enumerate((1.0, 2.0, 3.0)):
            assert torch.all(out[c][erased] == value) and torch.all(out[c][~erased] == 200)
    no_erasing = TrainTransform(size=(H, W), erasing_prob=0.0, erasing_value=(1.0, 2.0, 3.0))
    assert torch.all(no_erasing(img) == 200)


def test_config_maps_every_input_key() -> None:
    cfg = get_cfg()
    merge_from_list(
        cfg,
        ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[30, 14]"]
        + ["INPUT.INTERPOLATION", "bilinear", "INPUT.RESIZE_THEN_CROP.ENABLED", "True"]
        + [
            "INPUT.RESIZE_THEN_CROP.RESIZE",
            "[36, 18]",
            "INPUT.FLIP.ENABLED",
            "True",
            "INPUT.FLIP.PROB",
            "0.3",
        ]
        + ["INPUT.PADDING.ENABLED", "True", "INPUT.PADDING.SIZE", "5"]
        + ["INPUT.PADDING.MODE", "edge", "INPUT.REA.ENABLED", "True", "INPUT.REA.PROB", "0.7"]
        + ["INPUT.REA.VALUE", "[1.0, 2.0, 3.0]"],
    )
    train = TrainTransform(
        size=(32, 16),
        interpolation="bilinear",
        resize_then_crop=(36, 18),
        flip_prob=0.3,
        padding=5,
        padding_mode="edge",
        erasing_prob=0.7,
        erasing_value=(1.0, 2.0, 3.0),
    )
    assert repr(build_transforms(cfg, is_train=True)) == repr(train)
    test = EvalTransform(size=(30, 14), interpolation="bilinear")
    assert repr(build_transforms(cfg, is_train=False)) == repr(test)


def test_disabled_steps_are_left_out_whatever_their_other_keys() -> None:
    cfg = get_cfg()
    merge_from_list(cfg, ["INPUT.FLIP.PROB", "1.0", "INPUT.PADDING.MODE", "wrap"])
    assert repr(build_transforms(cfg, is_train=True)) == repr(TrainTransform())
    assert repr(build_transforms(cfg, is_train=False)) == repr(EvalTransform())


@pytest.mark.parametrize(
    "overrides, is_train, message",
    [
        (
            ["INPUT.INTERPOLATION", "nearest"],
            True,
            r"INPUT.INTERPOLATION must be one of \['bicubic', 'bilinear'\], got 'nearest'",
        ),
        (
            ["INPUT.PADDING.ENABLED", "True", "INPUT.PADDING.MODE", "wrap"],
            True,
            "INPUT.PADDING.MODE must be one of",
        ),
        (
            ["INPUT.RESIZE_THEN_CROP.ENABLED", "True", "INPUT.RESIZE_THEN_CROP.RESIZE", "[30, 20]"],
            True,
            r"INPUT.RESIZE_THEN_CROP.RESIZE \[30, 20\] must be at least INPUT.SIZE_TRAIN "
            r"\[32, 16\]",
        ),
        (
            ["INPUT.REA.ENABLED", "True", "INPUT.REA.VALUE", "[0.5, 0.4]"],
            True,
            "INPUT.REA.VALUE must be 1 or 3 fill values in 0..255",
        ),
        (
            ["INPUT.FLIP.ENABLED", "True", "INPUT.FLIP.PROB", "1.5"],
            True,
            r"INPUT.FLIP.PROB must be a probability in \[0, 1\], got 1.5",
        ),
        (["INPUT.SIZE_TEST", "[32]"], False, r"INPUT.SIZE_TEST must be \[height, width\]"),
    ],
)
def test_config_errors(overrides: list[str], is_train: bool, message: str) -> None:
    cfg = get_cfg()
    merge_from_list(cfg, ["INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]"])
    merge_from_list(cfg, overrides)
    with pytest.raises(ConfigError, match=message):
        build_transforms(cfg, is_train)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"interpolation": "nearest"}, r"^interpolation must be one of \['bicubic', 'bilinear'\]"),
        ({"padding": 2, "padding_mode": "wrap"}, "^padding_mode must be one of"),
        ({"padding": -1}, "^padding must be >= 0, got -1"),
        (
            {"resize_then_crop": (30, 20)},
            r"^resize_then_crop \[30, 20\] must be at least the output size",
        ),
        ({"erasing_prob": 0.5, "erasing_value": (0.5, 0.4)}, "^erasing_value must be 1 or 3"),
        ({"erasing_prob": 2.0}, r"^erasing_prob must be a probability in \[0, 1\], got 2.0"),
        ({"flip_prob": -0.5}, r"^flip_prob must be a probability"),
        ({"size": (32,)}, r"^size must be \[height, width\] with positive whole numbers"),
    ],
)
def test_argument_errors_name_the_argument(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainTransform(**{"size": (H, W), **arguments})


# fastreid 1.4.0 fastreid/data/transforms/build.py, training branch: the order of its steps.
FASTREID_TRAIN_ORDER = [
    "AutoAugment",  # INPUT.AUTOAUG
    "Resize",  # INPUT.SIZE_TRAIN
    "RandomResizedCrop",  # INPUT.CROP
    "Pad",  # INPUT.PADDING
    "RandomCrop",
    "RandomHorizontalFlip",  # INPUT.FLIP
    "ColorJitter",  # INPUT.CJ
    "RandomAffine",  # INPUT.AFFINE
    "AugMix",  # INPUT.AUGMIX
    "ToDtype",  # ToTensor
    "RandomErasing",  # INPUT.REA
    "RandomPatch",  # INPUT.RPT
]

EVERY_STEP = (
    ["INPUT.AUTOAUG.ENABLED", "True", "INPUT.AUTOAUG.PROB", "0.1", "INPUT.CROP.ENABLED", "True"]
    + ["INPUT.CROP.SIZE", "[24, 12]", "INPUT.PADDING.ENABLED", "True", "INPUT.FLIP.ENABLED", "True"]
    + ["INPUT.CJ.ENABLED", "True", "INPUT.AFFINE.ENABLED", "True", "INPUT.AUGMIX.ENABLED", "True"]
    + ["INPUT.AUGMIX.PROB", "0.2", "INPUT.REA.ENABLED", "True", "INPUT.RPT.ENABLED", "True"]
)


def test_pipeline_order_is_fastreids() -> None:
    cfg = get_cfg()
    merge_from_list(cfg, ["INPUT.SIZE_TRAIN", "[32, 16]"] + EVERY_STEP)
    t = build_transforms(cfg, is_train=True)
    names = [type(s).__name__ for s in t.transforms]
    assert names == ["ToRGB", "ToImage"] + FASTREID_TRAIN_ORDER + ["ToPureTensor"]
    out = t(_image(7))
    assert out.dtype == torch.float32 and out.shape == (3, H, W)


def test_config_maps_the_component_keys() -> None:
    from reid.data.transforms import (
        AugMix,
        AutoAugment,
        ColorJitter,
        RandomAffine,
        RandomPatch,
        RandomResizedCrop,
    )

    cfg = get_cfg()
    merge_from_list(cfg, ["INPUT.SIZE_TRAIN", "[32, 16]"] + EVERY_STEP)
    expected = TrainTransform(
        size=(32, 16),
        flip_prob=0.5,
        padding=10,
        erasing_prob=0.5,
        autoaugment=AutoAugment(prob=0.1),
        random_resized_crop=RandomResizedCrop(size=(24, 12)),
        color_jitter=ColorJitter(),
        affine=RandomAffine(),
        augmix=AugMix(prob=0.2),
        random_patch=RandomPatch(prob=0.5),
    )
    assert repr(build_transforms(cfg, is_train=True)) == repr(expected)


def test_flip_after_padding_as_fastreid() -> None:
    # Pad + random crop, then flip: with p = 1 the output is the mirror of a padded window.
    img = _image(8)
    plain = EvalTransform(size=(H, W))(img)
    padded = torch.nn.functional.pad(plain, (3, 3, 3, 3))
    t = TrainTransform(size=(H, W), padding=3, flip_prob=1.0)
    assert [type(s).__name__ for s in t.transforms][3:6] == [
        "Pad",
        "RandomCrop",
        "RandomHorizontalFlip",
    ]
    for _ in range(5):
        assert _windows(padded.flip(-1), t(img))
