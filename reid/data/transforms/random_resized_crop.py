"""Random resized crop (fastreid's INPUT.CROP).

fastreid: in training, after the resize to SIZE_TRAIN, ``RandomResizedCrop(SIZE, scale=SCALE,
ratio=RATIO)`` (bicubic): a crop covering a fraction of the area drawn from SCALE with an aspect
ratio (width / height) drawn log-uniformly from RATIO, resized to SIZE; in testing, after the
resize to SIZE_TEST, a centre crop of SIZE. So with CROP enabled the network sees SIZE images
(unless PADDING crops back to SIZE_TRAIN). Resizing uses INPUT.INTERPOLATION, antialiased.

reid's other crop, a resize to a larger size followed by a random crop of SIZE_TRAIN, is
INPUT.RESIZE_THEN_CROP (:mod:`reid.data.transforms.build`).
"""

from __future__ import annotations

from collections.abc import Sequence

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

from .common import interpolation_mode, size_pair, value_range

CROP_CONFIG = declare(
    ConfigBlock(
        "INPUT.CROP",
        "Random resized crop (fastreid's INPUT.CROP).",
        {
            "ENABLED": Key(
                False,
                "Training: after the resize to SIZE_TRAIN, crop a random area (SCALE) and aspect "
                "ratio (RATIO) and resize it to SIZE; testing: centre crop of SIZE after the "
                "resize to SIZE_TEST.",
            ),
            "SIZE": Key(
                [224, 224], "[height, width] of the crop ([s] = a square s x s, as fastreid)."
            ),
            "SCALE": Key([0.16, 1.0], "[min, max] fraction of the image area the crop covers."),
            "RATIO": Key(
                [3.0 / 4.0, 4.0 / 3.0],
                "[min, max] aspect ratio (width / height) of the crop, drawn log-uniformly.",
            ),
        },
    )
)


def crop_size(value: Sequence[int], argument: str = "size") -> tuple[int, int]:
    """[height, width], or [s] for a square, as (height, width)."""
    if len(value) == 1:
        return size_pair([value[0], value[0]], argument)
    return size_pair(value, argument)


class RandomResizedCrop(v2.RandomResizedCrop):
    """torchvision's RandomResizedCrop, antialiased.

    Args:
        size: [height, width] of the output, or [s] for a square.
        scale: [min, max] fraction of the area, 0 < min <= max <= 1.
        ratio: [min, max] aspect ratio (width / height), 0 < min <= max.
        interpolation: "bicubic" or "bilinear".
    """

    config_block = CROP_CONFIG

    @configurable
    def __init__(
        self,
        size: Sequence[int] = (224, 224),
        scale: Sequence[float] = (0.16, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bicubic",
    ) -> None:
        low, high = value_range(scale, "scale")
        if high > 1.0:
            raise InvalidArgument("scale", f"must lie in (0, 1], got {list(scale)}")
        super().__init__(
            crop_size(size),
            scale=(low, high),
            ratio=value_range(ratio, "ratio"),
            interpolation=interpolation_mode(interpolation),
            antialias=True,
        )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """Arguments from INPUT.CROP.SIZE / SCALE / RATIO and INPUT.INTERPOLATION."""
        args = CROP_CONFIG.arguments(cfg, skip=("ENABLED",))
        return args.set("interpolation", cfg.INPUT.INTERPOLATION, "INPUT.INTERPOLATION")

    @staticmethod
    def enabled(cfg: CfgNode) -> bool:
        """INPUT.CROP.ENABLED."""
        return bool(CROP_CONFIG.value(cfg, "ENABLED"))


def eval_crop_size(cfg: CfgNode) -> tuple[int, int] | None:
    """The test-time centre crop of INPUT.CROP (None when CROP is off).

    Raises:
        ConfigError: INPUT.CROP.SIZE is not [height, width] or [s].
    """
    if not RandomResizedCrop.enabled(cfg):
        return None
    try:
        return crop_size(CROP_CONFIG.value(cfg, "SIZE"))
    except InvalidArgument as e:
        raise ConfigError(f"{CROP_CONFIG.full_key('SIZE')} {e.problem}") from None
