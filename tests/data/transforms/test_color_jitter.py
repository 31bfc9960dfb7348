"""Colour jitter: torchvision's ColorJitter with INPUT.CJ's ranges, applied with INPUT.CJ.PROB."""

from collections.abc import Callable

import pytest
import torch
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.transforms import ColorJitter, build_transforms


def test_brightness_factor_range_and_probability() -> None:
    # Brightness alone on a grey image: the factor is uniform in [1 - b, 1 + b].
    grey = torch.full((3, 8, 4), 100, dtype=torch.uint8)
    step = ColorJitter(prob=0.3, brightness=0.2, contrast=0.0, saturation=0.0, hue=0.0)
    torch.manual_seed(0)
    values = [int(step(grey)[0, 0, 0]) for _ in range(2000)]
    jittered = [v for v in values if v != 100]
    # applied ~30 % of the time (a factor rounding back to 100 is rare: |f - 1| < 0.005)
    assert abs(len(jittered) / len(values) - 0.3) < 4 * (0.3 * 0.7 / len(values)) ** 0.5 + 0.01
    assert 80 <= min(jittered) <= 82 and 118 <= max(jittered) <= 120
    # uniform: the mean factor is 1, the spread that of U(0.8, 1.2)
    mean = sum(jittered) / len(jittered)
    std = (sum((v - mean) ** 2 for v in jittered) / len(jittered)) ** 0.5
    assert abs(mean - 100) < 1.0 and abs(std - 40 / 12**0.5) < 1.0


def test_config_maps_the_keys(input_cfg: Callable[..., CfgNode]) -> None:
    cfg = input_cfg(
        "INPUT.CJ.ENABLED", "True", "INPUT.CJ.PROB", "0.7", "INPUT.CJ.BRIGHTNESS", "0.3",
        "INPUT.CJ.CONTRAST", "0.2", "INPUT.CJ.SATURATION", "0.4", "INPUT.CJ.HUE", "0.05",
    )  # fmt: skip
    t = build_transforms(cfg, is_train=True)
    names = [type(s).__name__ for s in t.transforms]
    step = t.transforms[names.index("ColorJitter")]
    assert names[names.index("ColorJitter") - 1] == "RandomHorizontalFlip" or "FLIP" not in names
    assert repr(step) == repr(ColorJitter(0.7, 0.3, 0.2, 0.4, 0.05))
    jitter = step.transforms[0]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
        (0.7, 1.3),
        (0.8, 1.2),
        (0.6, 1.4),
        (-0.05, 0.05),
    )
    default = ColorJitter(input_cfg("INPUT.CJ.ENABLED", "True"))
    assert repr(default) == repr(ColorJitter(0.5, 0.15, 0.15, 0.1, 0.1))  # fastreid's defaults


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["INPUT.CJ.HUE", "0.7"], r"^INPUT\.CJ\.HUE must be in \[0, 0\.5\], got 0\.7"),
        (["INPUT.CJ.BRIGHTNESS", "-0.1"], r"^INPUT\.CJ\.BRIGHTNESS must be >= 0, got -0\.1"),
        (["INPUT.CJ.PROB", "0.0"], r"^INPUT\.CJ\.PROB must be a probability in \(0, 1\]"),
    ],
)
def test_errors_name_the_key(
    overrides: list[str], message: str, input_cfg: Callable[..., CfgNode]
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_transforms(input_cfg("INPUT.CJ.ENABLED", "True", *overrides), is_train=True)
