"""Colour jitter applied with a probability (fastreid's INPUT.CJ).

fastreid: ``RandomApply([ColorJitter(BRIGHTNESS, CONTRAST, SATURATION, HUE)], p=PROB)`` after
the horizontal flip. torchvision's ColorJitter: brightness, contrast and saturation factors
uniform in [max(0, 1 - x), 1 + x], hue shift uniform in [-HUE, HUE], applied in a random order.
"""

from __future__ import annotations

from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable, declare

from .common import probability

CJ_CONFIG = declare(
    ConfigBlock(
        "INPUT.CJ",
        "Colour jitter (fastreid's INPUT.CJ).",
        {
            "ENABLED": Key(False, "Apply colour jitter with probability PROB after the flip."),
            "PROB": Key(0.5, "Probability of jittering an image; must be > 0 when ENABLED."),
            "BRIGHTNESS": Key(0.15, "Brightness factor drawn from [max(0, 1 - x), 1 + x]."),
            "CONTRAST": Key(0.15, "Contrast factor drawn from [max(0, 1 - x), 1 + x]."),
            "SATURATION": Key(0.1, "Saturation factor drawn from [max(0, 1 - x), 1 + x]."),
            "HUE": Key(0.1, "Hue shift drawn from [-x, x], 0 <= x <= 0.5."),
        },
    )
)


class ColorJitter(v2.RandomApply):
    """With probability ``prob``, torchvision's ColorJitter.

    Args:
        prob: Probability of jittering an image, in (0, 1].
        brightness: Brightness factor range [max(0, 1 - brightness), 1 + brightness], >= 0.
        contrast: Contrast factor range, as brightness.
        saturation: Saturation factor range, as brightness.
        hue: Hue shift range [-hue, hue], 0 <= hue <= 0.5.
    """

    config_block = CJ_CONFIG

    @configurable
    def __init__(
        self,
        prob: float = 0.5,
        brightness: float = 0.15,
        contrast: float = 0.15,
        saturation: float = 0.1,
        hue: float = 0.1,
    ) -> None:
        p = probability(prob, "prob", allow_zero=False)
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if value < 0:
                raise InvalidArgument(name, f"must be >= 0, got {value}")
        if not 0 <= hue <= 0.5:
            raise InvalidArgument("hue", f"must be in [0, 0.5], got {hue}")
        jitter = v2.ColorJitter(
            brightness=float(brightness),
            contrast=float(contrast),
            saturation=float(saturation),
            hue=float(hue),
        )
        super().__init__([jitter], p=p)
        self.jitter = jitter

    def __repr__(self) -> str:
        j = self.jitter
        return (
            f"ColorJitter(prob={self.p}, brightness={j.brightness}, contrast={j.contrast}, "
            f"saturation={j.saturation}, hue={j.hue})"
        )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """Arguments from INPUT.CJ.PROB / BRIGHTNESS / CONTRAST / SATURATION / HUE."""
        return CJ_CONFIG.arguments(cfg, skip=("ENABLED",))

    @staticmethod
    def enabled(cfg: CfgNode) -> bool:
        """INPUT.CJ.ENABLED."""
        return bool(CJ_CONFIG.value(cfg, "ENABLED"))
