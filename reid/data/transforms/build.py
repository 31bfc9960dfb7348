"""Image transforms from INPUT.*: PIL image -> float32 3 x H x W tensor in 0..255.

No normalisation here: the meta-architecture normalises with MODEL.PIXEL_MEAN / PIXEL_STD.

Train, in this order (each step only when enabled):
    resize to SIZE_TRAIN, or to CROP.RESIZE then a random SIZE_TRAIN crop (CROP.ENABLED);
    horizontal flip with FLIP.PROB; pad PADDING.SIZE on every side (PADDING.MODE) then a random
    SIZE_TRAIN crop; convert to float32 (values stay 0..255); random erasing with REA.PROB,
    filled with REA.VALUE (per channel, 0..255 scale).
Test: resize to SIZE_TEST; convert to float32.

Resizing uses INPUT.INTERPOLATION ("bicubic" as in fastreid, or "bilinear"), antialiased, on
uint8 tensors, so the resized values are rounded to whole numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.config.schema import ConfigBlock, Key, declare

INPUT_CONFIG = declare(
    ConfigBlock(
        "INPUT",
        "Image transforms (reid/data/transforms/build.py).",
        {
            "SIZE_TRAIN": Key(
                [256, 128],
                "[height, width]",
            ),
            "SIZE_TEST": Key(
                [256, 128],
                "[height, width] of test images.",
            ),
            "INTERPOLATION": Key(
                "bicubic",
                (
                    'Resampling of every resize: "bicubic" (fastreid\'s choice) or "bilinear"; '
                    "antialiased."
                ),
            ),
            "CROP.ENABLED": Key(
                False,
                (
                    "Resize to CROP.RESIZE, then take a random SIZE_TRAIN crop (off: resize "
                    "straight to SIZE_TRAIN)."
                ),
            ),
            "CROP.RESIZE": Key(
                [288, 144],
                ("[height, width] before the random crop, at least SIZE_TRAIN in both dimensions."),
            ),
            "FLIP.ENABLED": Key(
                False,
                "Random horizontal flip.",
            ),
            "FLIP.PROB": Key(
                0.5,
                "Probability of flipping an image.",
            ),
            "PADDING.ENABLED": Key(
                False,
                ("Pad PADDING.SIZE pixels on every side, then take a random SIZE_TRAIN crop."),
            ),
            "PADDING.MODE": Key(
                "constant",
                ('torchvision padding mode: "constant" (zeros), "edge", "reflect" or "symmetric".'),
            ),
            "PADDING.SIZE": Key(
                10,
                "Pixels added on every side before the random crop.",
            ),
            "REA.ENABLED": Key(
                False,
                (
                    "Erased rectangle: torchvision's defaults, area 2 %..33 % of the image, "
                    "aspect ratio 0.3..3.3."
                ),
            ),
            "REA.PROB": Key(
                0.5,
                "Probability of erasing a rectangle of an image.",
            ),
            "REA.VALUE": Key(
                [0.485 * 255, 0.456 * 255, 0.406 * 255],
                (
                    "Fill of the erased rectangle per channel (R, G, B) on the 0..255 scale; [0, "
                    "0, 0] = black."
                ),
            ),
        },
    )
)


INTERPOLATIONS: dict[str, v2.InterpolationMode] = {
    "bicubic": v2.InterpolationMode.BICUBIC,
    "bilinear": v2.InterpolationMode.BILINEAR,
}
PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


class ToRGB:
    """Converts PIL images of any mode (L, P, RGBA, ...) to RGB; other inputs pass unchanged."""

    def __call__(self, image: object) -> object:
        if isinstance(image, Image.Image) and image.mode != "RGB":
            return image.convert("RGB")
        return image

    def __repr__(self) -> str:
        return "ToRGB()"


def _size(cfg_value: Sequence[int], key: str) -> tuple[int, int]:
    if len(cfg_value) != 2 or any(int(v) != v or v < 1 for v in cfg_value):
        raise ConfigError(
            f"{key} must be [height, width] with positive whole numbers, got {list(cfg_value)}"
        )
    return int(cfg_value[0]), int(cfg_value[1])


def _interpolation(cfg: CfgNode) -> v2.InterpolationMode:
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATIONS:
        raise ConfigError(
            f"INPUT.INTERPOLATION must be one of {sorted(INTERPOLATIONS)}, got {name!r}"
        )
    return INTERPOLATIONS[name]


def _probability(value: float, key: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} must be a probability in [0, 1], got {value}")
    return float(value)


def _resize_steps(
    cfg: CfgNode, size: tuple[int, int], interpolation: v2.InterpolationMode
) -> list[Callable]:
    if not cfg.INPUT.CROP.ENABLED:
        return [v2.Resize(size, interpolation=interpolation, antialias=True)]
    resize = _size(cfg.INPUT.CROP.RESIZE, "INPUT.CROP.RESIZE")
    if resize[0] < size[0] or resize[1] < size[1]:
        raise ConfigError(
            f"INPUT.CROP.RESIZE {list(resize)} must be at least INPUT.SIZE_TRAIN {list(size)} in both dimensions"
        )
    return [v2.Resize(resize, interpolation=interpolation, antialias=True), v2.RandomCrop(size)]


def _padding_steps(cfg: CfgNode, size: tuple[int, int]) -> list[Callable]:
    pad = cfg.INPUT.PADDING
    if pad.MODE not in PADDING_MODES:
        raise ConfigError(
            f"INPUT.PADDING.MODE must be one of {list(PADDING_MODES)}, got {pad.MODE!r}"
        )
    if pad.SIZE < 0:
        raise ConfigError(f"INPUT.PADDING.SIZE must be >= 0, got {pad.SIZE}")
    return [v2.Pad(pad.SIZE, fill=0, padding_mode=pad.MODE), v2.RandomCrop(size)]


def _erasing_step(cfg: CfgNode) -> v2.RandomErasing:
    rea = cfg.INPUT.REA
    value = [float(v) for v in rea.VALUE]
    if len(value) not in (1, 3) or any(not 0.0 <= v <= 255.0 for v in value):
        raise ConfigError(
            f"INPUT.REA.VALUE must be 1 or 3 fill values in 0..255, got {list(rea.VALUE)}"
        )
    return v2.RandomErasing(p=_probability(rea.PROB, "INPUT.REA.PROB"), value=value)


def build_transforms(cfg: CfgNode, is_train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The train or test pipeline described in the module docstring."""
    interpolation = _interpolation(cfg)
    steps: list[Callable] = [ToRGB(), v2.ToImage()]
    if not is_train:
        size = _size(cfg.INPUT.SIZE_TEST, "INPUT.SIZE_TEST")
        steps.append(v2.Resize(size, interpolation=interpolation, antialias=True))
        steps += [v2.ToDtype(torch.float32, scale=False), v2.ToPureTensor()]
        return v2.Compose(steps)

    size = _size(cfg.INPUT.SIZE_TRAIN, "INPUT.SIZE_TRAIN")
    steps += _resize_steps(cfg, size, interpolation)
    if cfg.INPUT.FLIP.ENABLED:
        steps.append(
            v2.RandomHorizontalFlip(p=_probability(cfg.INPUT.FLIP.PROB, "INPUT.FLIP.PROB"))
        )
    if cfg.INPUT.PADDING.ENABLED:
        steps += _padding_steps(cfg, size)
    steps.append(v2.ToDtype(torch.float32, scale=False))
    if cfg.INPUT.REA.ENABLED:
        steps.append(_erasing_step(cfg))
    steps.append(v2.ToPureTensor())
    return v2.Compose(steps)
