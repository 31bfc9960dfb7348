"""Image transforms: PIL image -> float32 3 x H x W tensor in 0..255.

No normalisation here: the meta-architecture normalises with MODEL.PIXEL_MEAN / PIXEL_STD.

:class:`TrainTransform`, in this order (each step only when its argument is given):
    resize to ``size``, or to ``crop_resize`` then a random ``size`` crop; horizontal flip with
    ``flip_prob``; pad ``padding`` pixels on every side (``padding_mode``) then a random ``size``
    crop; convert to float32 (values stay 0..255); random erasing with ``erasing_prob``, filled
    with ``erasing_value`` (per channel, 0..255 scale).
:class:`EvalTransform`: resize to ``size``; convert to float32.

Resizing uses ``interpolation`` ("bicubic" as in fastreid, or "bilinear"), antialiased, on uint8
tensors, so the resized values are rounded to whole numbers. From a config (INPUT.*), a step whose
ENABLED key is False is left out; :func:`build_transforms` picks the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config.schema import (
    ConfigArgs,
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
    declare,
)

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)

INPUT_CONFIG = declare(
    ConfigBlock(
        "INPUT",
        "Image transforms.",
        {
            "SIZE_TRAIN": Key([256, 128], "[height, width] of training images."),
            "SIZE_TEST": Key([256, 128], "[height, width] of test images."),
            "INTERPOLATION": Key(
                "bicubic",
                'Resampling of every resize: "bicubic" (fastreid\'s choice) or "bilinear"; '
                "antialiased.",
            ),
            "CROP.ENABLED": Key(
                False,
                "Resize to CROP.RESIZE, then take a random SIZE_TRAIN crop (off: resize straight "
                "to SIZE_TRAIN).",
            ),
            "CROP.RESIZE": Key(
                [288, 144],
                "[height, width] before the random crop, at least SIZE_TRAIN in both dimensions.",
            ),
            "FLIP.ENABLED": Key(False, "Random horizontal flip."),
            "FLIP.PROB": Key(0.5, "Probability of flipping an image."),
            "PADDING.ENABLED": Key(
                False, "Pad PADDING.SIZE pixels on every side, then take a random SIZE_TRAIN crop."
            ),
            "PADDING.MODE": Key(
                "constant",
                'torchvision padding mode: "constant" (zeros), "edge", "reflect" or "symmetric".',
            ),
            "PADDING.SIZE": Key(10, "Pixels added on every side before the random crop."),
            "REA.ENABLED": Key(
                False,
                "Random erasing of a rectangle: torchvision's defaults, area 2 %..33 % of the "
                "image, aspect ratio 0.3..3.3.",
            ),
            "REA.PROB": Key(0.5, "Probability of erasing a rectangle of an image."),
            "REA.VALUE": Key(
                list(IMAGENET_MEAN_255),
                "Fill of the erased rectangle per channel (R, G, B) on the 0..255 scale; "
                "[0, 0, 0] = black.",
            ),
        },
    )
)


INTERPOLATIONS: dict[str, v2.InterpolationMode] = {
    "bicubic": v2.InterpolationMode.BICUBIC,
    "bilinear": v2.InterpolationMode.BILINEAR,
}
PADDING_MODES = ("constant", "edge", "reflect", "symmetric")

Size = Sequence[int]


class ToRGB:
    """Converts PIL images of any mode (L, P, RGBA, ...) to RGB; other inputs pass unchanged."""

    def __call__(self, image: object) -> object:
        if isinstance(image, Image.Image) and image.mode != "RGB":
            return image.convert("RGB")
        return image

    def __repr__(self) -> str:
        return "ToRGB()"


def _as_size(value: Size) -> tuple[int, int] | None:
    if len(value) != 2 or any(int(v) != v or v < 1 for v in value):
        return None
    return int(value[0]), int(value[1])


def _size(value: Size, argument: str) -> tuple[int, int]:
    size = _as_size(value)
    if size is None:
        raise InvalidArgument(
            argument, f"must be [height, width] with positive whole numbers, got {list(value)}"
        )
    return size


def _interpolation(name: str) -> v2.InterpolationMode:
    if name not in INTERPOLATIONS:
        raise InvalidArgument(
            "interpolation", f"must be one of {sorted(INTERPOLATIONS)}, got {name!r}"
        )
    return INTERPOLATIONS[name]


def _probability(value: float, argument: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(argument, f"must be a probability in [0, 1], got {value}")
    return float(value)


def _covers(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] >= inner[0] and outer[1] >= inner[1]


def _resize(size: tuple[int, int], interpolation: v2.InterpolationMode) -> v2.Resize:
    return v2.Resize(size, interpolation=interpolation, antialias=True)


def _resize_steps(
    size: tuple[int, int], crop_resize: Size | None, interpolation: v2.InterpolationMode
) -> list[Callable]:
    if crop_resize is None:
        return [_resize(size, interpolation)]
    resize = _size(crop_resize, "crop_resize")
    if not _covers(resize, size):
        raise InvalidArgument(
            "crop_resize",
            f"{list(resize)} must be at least the output size {list(size)} in both dimensions",
        )
    return [_resize(resize, interpolation), v2.RandomCrop(size)]


def _padding_steps(size: tuple[int, int], padding: int, mode: str) -> list[Callable]:
    if mode not in PADDING_MODES:
        raise InvalidArgument("padding_mode", f"must be one of {list(PADDING_MODES)}, got {mode!r}")
    if padding < 0:
        raise InvalidArgument("padding", f"must be >= 0, got {padding}")
    return [v2.Pad(padding, fill=0, padding_mode=mode), v2.RandomCrop(size)]


def _erasing_step(prob: float, value: Sequence[float]) -> v2.RandomErasing:
    fill = [float(v) for v in value]
    if len(fill) not in (1, 3) or any(not 0.0 <= v <= 255.0 for v in fill):
        raise InvalidArgument(
            "erasing_value", f"must be 1 or 3 fill values in 0..255, got {list(value)}"
        )
    return v2.RandomErasing(p=_probability(prob, "erasing_prob"), value=fill)


class TrainTransform(v2.Compose):
    """The training pipeline (see the module docstring); an argument left None skips its step.

    Args:
        size: [height, width] of the output.
        interpolation: "bicubic" or "bilinear".
        crop_resize: Resize to this [height, width] (at least ``size``), then crop ``size`` at
            random; None = resize straight to ``size``.
        flip_prob: Probability of a horizontal flip; None = no flip step.
        padding: Pixels padded on every side before a random ``size`` crop; None = no padding.
        padding_mode: "constant" (zeros), "edge", "reflect" or "symmetric".
        erasing_prob: Probability of random erasing; None = no erasing step.
        erasing_value: The erased rectangle's fill, 1 or 3 values in 0..255.

    >>> t = TrainTransform(size=(32, 16), flip_prob=1.0)
    >>> image = Image.new("RGB", (20, 40), (200, 100, 50))
    >>> out = t(image)
    >>> out.dtype, tuple(out.shape), out[:, 0, 0].tolist()
    (torch.float32, (3, 32, 16), [200.0, 100.0, 50.0])
    """

    @configurable
    def __init__(
        self,
        size: Size = (256, 128),
        interpolation: str = "bicubic",
        crop_resize: Size | None = None,
        flip_prob: float | None = None,
        padding: int | None = None,
        padding_mode: str = "constant",
        erasing_prob: float | None = None,
        erasing_value: Sequence[float] = IMAGENET_MEAN_255,
    ) -> None:
        mode = _interpolation(interpolation)
        out_size = _size(size, "size")
        steps: list[Callable] = [ToRGB(), v2.ToImage()]
        steps += _resize_steps(out_size, crop_resize, mode)
        if flip_prob is not None:
            steps.append(v2.RandomHorizontalFlip(p=_probability(flip_prob, "flip_prob")))
        if padding is not None:
            steps += _padding_steps(out_size, padding, padding_mode)
        steps.append(v2.ToDtype(torch.float32, scale=False))
        if erasing_prob is not None:
            steps.append(_erasing_step(erasing_prob, erasing_value))
        steps.append(v2.ToPureTensor())
        super().__init__(steps)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """Arguments from INPUT.*: SIZE_TRAIN, INTERPOLATION and the steps that are ENABLED.

        Raises:
            ConfigError: INPUT.CROP.RESIZE is smaller than INPUT.SIZE_TRAIN.
        """
        c = INPUT_CONFIG.read(cfg)
        keys = {"size": "SIZE_TRAIN", "interpolation": "INTERPOLATION"}
        if c.CROP.ENABLED:
            _check_crop_covers_size(c.CROP.RESIZE, c.SIZE_TRAIN)
            keys["crop_resize"] = "CROP.RESIZE"
        if c.FLIP.ENABLED:
            keys["flip_prob"] = "FLIP.PROB"
        if c.PADDING.ENABLED:
            keys.update(padding="PADDING.SIZE", padding_mode="PADDING.MODE")
        if c.REA.ENABLED:
            keys.update(erasing_prob="REA.PROB", erasing_value="REA.VALUE")
        return _input_arguments(cfg, keys)


class EvalTransform(v2.Compose):
    """The test pipeline: resize to ``size``, convert to float32 (values 0..255).

    Args:
        size: [height, width] of the output.
        interpolation: "bicubic" or "bilinear".
    """

    @configurable
    def __init__(self, size: Size = (256, 128), interpolation: str = "bicubic") -> None:
        mode = _interpolation(interpolation)
        out_size = _size(size, "size")
        steps: list[Callable] = [ToRGB(), v2.ToImage(), _resize(out_size, mode)]
        steps += [v2.ToDtype(torch.float32, scale=False), v2.ToPureTensor()]
        super().__init__(steps)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """Arguments from INPUT.SIZE_TEST and INPUT.INTERPOLATION."""
        return _input_arguments(cfg, {"size": "SIZE_TEST", "interpolation": "INTERPOLATION"})


def _input_arguments(cfg: CfgNode, keys: dict[str, str]) -> ConfigArgs:
    """Argument -> the value of its INPUT key, remembering the key."""
    args = ConfigArgs()
    for argument, key in keys.items():
        args.set(argument, INPUT_CONFIG.value(cfg, key), INPUT_CONFIG.full_key(key))
    return args


def _check_crop_covers_size(crop_resize: Size, size: Size) -> None:
    """The cross-key rule, named by both keys (the constructor checks it for plain use too)."""
    resize, out = _as_size(crop_resize), _as_size(size)
    if resize is not None and out is not None and not _covers(resize, out):
        raise ConfigError(
            f"INPUT.CROP.RESIZE {list(resize)} must be at least INPUT.SIZE_TRAIN {list(out)} in "
            f"both dimensions"
        )


def build_transforms(cfg: CfgNode, is_train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The training or the test pipeline of INPUT.*.

    Args:
        cfg: The whole config.
        is_train: :class:`TrainTransform` if True, else :class:`EvalTransform`.
    """
    return TrainTransform(cfg) if is_train else EvalTransform(cfg)
