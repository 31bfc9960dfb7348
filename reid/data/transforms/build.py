"""Image transforms: PIL image -> float32 3 x H x W tensor in 0..255.

No normalisation here: the meta-architecture normalises with MODEL.PIXEL_MEAN / PIXEL_STD.

:class:`TrainTransform` runs the steps of fastreid's ``build_transforms`` in fastreid's order, each
only when its argument is given (from a config: when its ENABLED key is True):

1. AutoAugment (INPUT.AUTOAUG), on the image as loaded;
2. resize to ``size`` (INPUT.SIZE_TRAIN), or to ``resize_then_crop`` then a random ``size``
   crop (INPUT.RESIZE_THEN_CROP);
3. random resized crop (INPUT.CROP);
4. pad ``padding`` pixels on every side (``padding_mode``) then a random ``size`` crop
   (INPUT.PADDING);
5. horizontal flip with ``flip_prob`` (INPUT.FLIP);
6. colour jitter (INPUT.CJ); 7. random affine (INPUT.AFFINE); 8. AugMix (INPUT.AUGMIX);
9. conversion to float32 (values stay 0..255);
10. random erasing with ``erasing_prob``, filled with ``erasing_value`` (INPUT.REA);
11. random patch (INPUT.RPT).

:class:`EvalTransform`: resize to ``size`` (INPUT.SIZE_TEST); a centre crop when INPUT.CROP is on
(fastreid's test pipeline); conversion to float32.

Resizing uses ``interpolation`` ("bicubic" as in fastreid, or "bilinear"), antialiased, on uint8
tensors, so the resized values are rounded to whole numbers. The steps with their own keys are
components in this package (``autoaugment.py``, ``random_resized_crop.py``, ``color_jitter.py``,
``affine.py``, ``augmix.py``, ``random_patch.py``); :func:`build_transforms` picks the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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

from .affine import RandomAffine
from .augmix import AugMix
from .autoaugment import AutoAugment
from .color_jitter import ColorJitter
from .common import INTERPOLATIONS, Size, as_size, interpolation_mode, probability, size_pair
from .random_patch import RandomPatch
from .random_resized_crop import RandomResizedCrop, eval_crop_size

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
            "RESIZE_THEN_CROP.ENABLED": Key(
                False,
                "Resize to RESIZE_THEN_CROP.RESIZE instead of SIZE_TRAIN, then take a random "
                "SIZE_TRAIN crop (a random translation that keeps the scale). Not fastreid's "
                "INPUT.CROP, which is a random resized crop.",
            ),
            "RESIZE_THEN_CROP.RESIZE": Key(
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

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")

__all__ = ["INTERPOLATIONS", "EvalTransform", "TrainTransform", "build_transforms"]


class ToRGB:
    """Converts PIL images of any mode (L, P, RGBA, ...) to RGB; other inputs pass unchanged."""

    def __call__(self, image: object) -> object:
        if isinstance(image, Image.Image) and image.mode != "RGB":
            return image.convert("RGB")
        return image

    def __repr__(self) -> str:
        return "ToRGB()"


def _covers(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] >= inner[0] and outer[1] >= inner[1]


def _resize(size: tuple[int, int], interpolation: v2.InterpolationMode) -> v2.Resize:
    return v2.Resize(size, interpolation=interpolation, antialias=True)


def _resize_steps(
    size: tuple[int, int], resize_then_crop: Size | None, interpolation: v2.InterpolationMode
) -> list[Callable]:
    if resize_then_crop is None:
        return [_resize(size, interpolation)]
    resize = size_pair(resize_then_crop, "resize_then_crop")
    if not _covers(resize, size):
        raise InvalidArgument(
            "resize_then_crop",
            f"{list(resize)} must be at least the output size {list(size)} in both dimensions",
        )
    return [_resize(resize, interpolation), v2.RandomCrop(size)]


def _padding_steps(
    size: tuple[int, int], current: tuple[int, int], padding: int, mode: str
) -> list[Callable]:
    if mode not in PADDING_MODES:
        raise InvalidArgument("padding_mode", f"must be one of {list(PADDING_MODES)}, got {mode!r}")
    if padding < 0:
        raise InvalidArgument("padding", f"must be >= 0, got {padding}")
    padded = (current[0] + 2 * padding, current[1] + 2 * padding)
    if not _covers(padded, size):
        raise InvalidArgument(
            "padding",
            f"{padding} leaves the {list(current)} images smaller than the {list(size)} crop "
            f"that follows the padding",
        )
    return [v2.Pad(padding, fill=0, padding_mode=mode), v2.RandomCrop(size)]


def _erasing_step(prob: float, value: Sequence[float]) -> v2.RandomErasing:
    fill = [float(v) for v in value]
    if len(fill) not in (1, 3) or any(not 0.0 <= v <= 255.0 for v in fill):
        raise InvalidArgument(
            "erasing_value", f"must be 1 or 3 fill values in 0..255, got {list(value)}"
        )
    return v2.RandomErasing(p=probability(prob, "erasing_prob"), value=fill)


class TrainTransform(v2.Compose):
    """The training pipeline (see the module docstring); an argument left None skips its step.

    Args:
        size: [height, width] after the resize step.
        interpolation: "bicubic" or "bilinear".
        resize_then_crop: Resize to this [height, width] (at least ``size``), then crop ``size``
            at random; None = resize straight to ``size``.
        flip_prob: Probability of a horizontal flip; None = no flip step.
        padding: Pixels padded on every side before a random ``size`` crop; None = no padding.
        padding_mode: "constant" (zeros), "edge", "reflect" or "symmetric".
        erasing_prob: Probability of random erasing; None = no erasing step.
        erasing_value: The erased rectangle's fill, 1 or 3 values in 0..255.
        autoaugment: The AutoAugment step (:class:`AutoAugment`), first of all.
        random_resized_crop: The random resized crop (:class:`RandomResizedCrop`), after the
            resize; the output then has its size unless padding crops back to ``size``.
        color_jitter: The colour jitter step (:class:`ColorJitter`), after the flip.
        affine: The random affine step (:class:`RandomAffine`), after the colour jitter.
        augmix: The AugMix step (:class:`AugMix`), after the affine step.
        random_patch: The random patch step (:class:`RandomPatch`), last.

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
        resize_then_crop: Size | None = None,
        flip_prob: float | None = None,
        padding: int | None = None,
        padding_mode: str = "constant",
        erasing_prob: float | None = None,
        erasing_value: Sequence[float] = IMAGENET_MEAN_255,
        autoaugment: AutoAugment | None = None,
        random_resized_crop: RandomResizedCrop | None = None,
        color_jitter: ColorJitter | None = None,
        affine: RandomAffine | None = None,
        augmix: AugMix | None = None,
        random_patch: RandomPatch | None = None,
    ) -> None:
        mode = interpolation_mode(interpolation)
        out_size = size_pair(size, "size")
        steps: list[Callable] = [ToRGB(), v2.ToImage()]
        if autoaugment is not None:
            steps.append(autoaugment)
        steps += _resize_steps(out_size, resize_then_crop, mode)
        current = out_size
        if random_resized_crop is not None:
            steps.append(random_resized_crop)
            height, width = random_resized_crop.size
            current = (height, width)
        if padding is not None:
            steps += _padding_steps(out_size, current, padding, padding_mode)
        if flip_prob is not None:
            steps.append(v2.RandomHorizontalFlip(p=probability(flip_prob, "flip_prob")))
        steps += [step for step in (color_jitter, affine, augmix) if step is not None]
        steps.append(v2.ToDtype(torch.float32, scale=False))
        if erasing_prob is not None:
            steps.append(_erasing_step(erasing_prob, erasing_value))
        if random_patch is not None:
            steps.append(random_patch)
        steps.append(v2.ToPureTensor())
        super().__init__(steps)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """Arguments from INPUT.*: SIZE_TRAIN, INTERPOLATION and the steps that are ENABLED.

        Raises:
            ConfigError: INPUT.RESIZE_THEN_CROP.RESIZE is smaller than INPUT.SIZE_TRAIN, or a
                step's key has a value it cannot use (the message names the key).
        """
        c = INPUT_CONFIG.read(cfg)
        keys = {"size": "SIZE_TRAIN", "interpolation": "INTERPOLATION"}
        if c.RESIZE_THEN_CROP.ENABLED:
            _check_resize_covers_size(c.RESIZE_THEN_CROP.RESIZE, c.SIZE_TRAIN)
            keys["resize_then_crop"] = "RESIZE_THEN_CROP.RESIZE"
        if c.FLIP.ENABLED:
            keys["flip_prob"] = "FLIP.PROB"
        if c.PADDING.ENABLED:
            keys.update(padding="PADDING.SIZE", padding_mode="PADDING.MODE")
        if c.REA.ENABLED:
            keys.update(erasing_prob="REA.PROB", erasing_value="REA.VALUE")
        args = _input_arguments(cfg, keys)
        components: dict[str, Any] = {
            "autoaugment": AutoAugment,
            "random_resized_crop": RandomResizedCrop,
            "color_jitter": ColorJitter,
            "affine": RandomAffine,
            "augmix": AugMix,
            "random_patch": RandomPatch,
        }
        for argument, component in components.items():
            if component.enabled(cfg):
                args.set(argument, component(cfg))
        return args


class EvalTransform(v2.Compose):
    """The test pipeline: resize to ``size``, optionally a centre crop, convert to float32
    (values 0..255).

    Args:
        size: [height, width] of the resize.
        interpolation: "bicubic" or "bilinear".
        center_crop: [height, width] of a centre crop after the resize (fastreid's test
            pipeline with INPUT.CROP on); None = no crop.
    """

    @configurable
    def __init__(
        self,
        size: Size = (256, 128),
        interpolation: str = "bicubic",
        center_crop: Size | None = None,
    ) -> None:
        mode = interpolation_mode(interpolation)
        out_size = size_pair(size, "size")
        steps: list[Callable] = [ToRGB(), v2.ToImage(), _resize(out_size, mode)]
        if center_crop is not None:
            steps.append(v2.CenterCrop(size_pair(center_crop, "center_crop")))
        steps += [v2.ToDtype(torch.float32, scale=False), v2.ToPureTensor()]
        super().__init__(steps)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """Arguments from INPUT.SIZE_TEST, INPUT.INTERPOLATION and INPUT.CROP (ENABLED, SIZE)."""
        args = _input_arguments(cfg, {"size": "SIZE_TEST", "interpolation": "INTERPOLATION"})
        crop = eval_crop_size(cfg)
        if crop is not None:
            args.set("center_crop", crop, "INPUT.CROP.SIZE")
        return args


def _input_arguments(cfg: CfgNode, keys: dict[str, str]) -> ConfigArgs:
    """Argument -> the value of its INPUT key, remembering the key."""
    args = ConfigArgs()
    for argument, key in keys.items():
        args.set(argument, INPUT_CONFIG.value(cfg, key), INPUT_CONFIG.full_key(key))
    return args


def _check_resize_covers_size(resize_then_crop: Size, size: Size) -> None:
    """The cross-key rule, named by both keys (the constructor checks it for plain use too)."""
    resize, out = as_size(resize_then_crop), as_size(size)
    if resize is not None and out is not None and not _covers(resize, out):
        raise ConfigError(
            f"INPUT.RESIZE_THEN_CROP.RESIZE {list(resize)} must be at least INPUT.SIZE_TRAIN "
            f"{list(out)} in both dimensions"
        )


def build_transforms(cfg: CfgNode, is_train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """The training or the test pipeline of INPUT.*.

    Args:
        cfg: The whole config.
        is_train: :class:`TrainTransform` if True, else :class:`EvalTransform`.
    """
    return TrainTransform(cfg) if is_train else EvalTransform(cfg)
