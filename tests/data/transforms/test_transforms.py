"""Train and test transforms: shapes, value range, flip, pad + crop, crop, erasing, errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from reid.config import ConfigError, get_cfg
from reid.data.transforms import build_transforms

H, W = 32, 16


def _cfg():
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    return cfg


def _image(seed: int = 0, size=(20, 40)) -> Image.Image:
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
    t = build_transforms(_cfg(), is_train=False)
    img = _image()
    out = t(img)
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, H, W)
    assert 0 <= out.min() and out.max() <= 255 and out.max() > 1
    assert torch.equal(out, t(img))
    ref = F.resize(
        F.pil_to_tensor(img), [H, W], interpolation=F.InterpolationMode.BICUBIC, antialias=True
    ).float()
    assert torch.equal(out, ref)
    cfg = _cfg()
    cfg.INPUT.INTERPOLATION = "bilinear"
    assert not torch.equal(build_transforms(cfg, is_train=False)(img), out)


def test_no_normalisation_happens() -> None:
    cfg = _cfg()
    cfg.INPUT.FLIP.ENABLED = True
    img = Image.new("RGB", (20, 40), (200, 100, 50))
    for is_train in (True, False):
        out = build_transforms(cfg, is_train)(img)
        assert torch.equal(out, torch.tensor([200.0, 100.0, 50.0]).view(3, 1, 1).expand(3, H, W))


def test_grayscale_input_gives_three_channels() -> None:
    out = build_transforms(_cfg(), is_train=False)(Image.new("L", (16, 32), 77))
    assert out.shape == (3, H, W) and torch.all(out == 77)


def test_flip_with_probability_one_and_zero() -> None:
    img = _image(1)
    plain = build_transforms(_cfg(), is_train=False)(img)
    cfg = _cfg()
    cfg.INPUT.FLIP.ENABLED, cfg.INPUT.FLIP.PROB = True, 1.0
    assert torch.equal(build_transforms(cfg, True)(img), plain.flip(-1))
    cfg.INPUT.FLIP.PROB = 0.0
    assert torch.equal(build_transforms(cfg, True)(img), plain)
    cfg.INPUT.FLIP.ENABLED, cfg.INPUT.FLIP.PROB = False, 1.0
    assert torch.equal(build_transforms(cfg, True)(img), plain)


def test_padding_and_random_crop_keep_size_and_shift_the_content() -> None:
    img = _image(2)
    plain = build_transforms(_cfg(), is_train=False)(img)
    padded = torch.nn.functional.pad(plain, (4, 4, 4, 4))
    cfg = _cfg()
    cfg.INPUT.PADDING.ENABLED, cfg.INPUT.PADDING.SIZE = True, 4
    t = build_transforms(cfg, True)
    outs = [t(img) for _ in range(8)]
    assert all(o.shape == (3, H, W) for o in outs)
    assert all(_windows(padded, o) for o in outs)
    assert any(not torch.equal(o, plain) for o in outs)


def test_crop_resizes_then_crops_to_the_train_size() -> None:
    img = _image(3)
    cfg = _cfg()
    cfg.INPUT.SIZE_TEST = [36, 18]
    big = build_transforms(cfg, is_train=False)(img)
    cfg.INPUT.CROP.ENABLED, cfg.INPUT.CROP.RESIZE = True, [36, 18]
    t = build_transforms(cfg, True)
    outs = [t(img) for _ in range(6)]
    assert all(o.shape == (3, H, W) and _windows(big, o) for o in outs)
    assert len({tuple(o.flatten().tolist()) for o in outs}) > 1


def test_random_erasing_fills_a_rectangle_with_the_value() -> None:
    cfg = _cfg()
    cfg.INPUT.REA.ENABLED, cfg.INPUT.REA.PROB, cfg.INPUT.REA.VALUE = True, 1.0, [1.0, 2.0, 3.0]
    img = Image.new("RGB", (W, H), (200, 200, 200))
    t = build_transforms(cfg, True)
    for _ in range(5):
        out = t(img)
        erased = out[0] != 200
        assert erased.any()
        rows, cols = erased.any(dim=1).nonzero().flatten(), erased.any(dim=0).nonzero().flatten()
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        assert erased[box].all() and erased.sum() == erased[box].numel()
        for c, value in enumerate((1.0, 2.0, 3.0)):
            assert torch.all(out[c][erased] == value) and torch.all(out[c][~erased] == 200)
    cfg.INPUT.REA.PROB = 0.0
    assert torch.all(build_transforms(cfg, True)(img) == 200)


def test_config_errors() -> None:
    cfg = _cfg()
    cfg.INPUT.INTERPOLATION = "nearest"
    with pytest.raises(
        ConfigError,
        match=r"INPUT.INTERPOLATION must be one of \['bicubic', 'bilinear'\], got 'nearest'",
    ):
        build_transforms(cfg, True)
    cfg = _cfg()
    cfg.INPUT.PADDING.ENABLED, cfg.INPUT.PADDING.MODE = True, "wrap"
    with pytest.raises(ConfigError, match="INPUT.PADDING.MODE must be one of"):
        build_transforms(cfg, True)
    cfg = _cfg()
    cfg.INPUT.CROP.ENABLED, cfg.INPUT.CROP.RESIZE = True, [30, 20]
    with pytest.raises(
        ConfigError,
        match=r"INPUT.CROP.RESIZE \[30, 20\] must be at least INPUT.SIZE_TRAIN \[32, 16\]",
    ):
        build_transforms(cfg, True)
    cfg = _cfg()
    cfg.INPUT.REA.ENABLED, cfg.INPUT.REA.VALUE = True, [0.5, 0.4]
    with pytest.raises(ConfigError, match="INPUT.REA.VALUE must be 1 or 3 fill values in 0..255"):
        build_transforms(cfg, True)
    cfg = _cfg()
    cfg.INPUT.FLIP.ENABLED, cfg.INPUT.FLIP.PROB = True, 1.5
    with pytest.raises(
        ConfigError, match=r"INPUT.FLIP.PROB must be a probability in \[0, 1\], got 1.5"
    ):
        build_transforms(cfg, True)
    cfg = _cfg()
    cfg.INPUT.SIZE_TEST = [32]
    with pytest.raises(ConfigError, match=r"INPUT.SIZE_TEST must be \[height, width\]"):
        build_transforms(cfg, False)
