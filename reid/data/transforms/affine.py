"""Random affine transform (fastreid's INPUT.AFFINE).

fastreid: ``RandomAffine(degrees=10, translate=None, scale=[0.9, 1.1], shear=0.1,
resample=False, fillcolor=0)`` after the colour jitter: rotation uniform in [-10, 10] degrees,
scale uniform in [0.9, 1.1], shear along x uniform in [-0.1, 0.1] degrees, nearest-neighbour
resampling, uncovered pixels black. Only ENABLED is a key; the parameters are fastreid's fixed
values (constructor arguments here).
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable, declare

from .common import value_range

AFFINE_CONFIG = declare(
    ConfigBlock(
        "INPUT.AFFINE",
        "Random affine transform (fastreid's INPUT.AFFINE).",
        {
            "ENABLED": Key(
                False,
                "Random rotation (+-10 degrees), scale (0.9..1.1) and shear (+-0.1 degrees), "
                "nearest-neighbour, black fill, after the colour jitter (fastreid's fixed values).",
            ),
        },
    )
)


class RandomAffine(v2.RandomAffine):
    """torchvision's RandomAffine with fastreid's values as defaults.

    Args:
        degrees: Rotation drawn from [-degrees, degrees].
        scale: [min, max] of the scale factor.
        shear: Shear along x drawn from [-shear, shear] degrees.
        fill: Value of uncovered pixels.
    """

    config_block = AFFINE_CONFIG

    @configurable
    def __init__(
        self,
        degrees: float = 10.0,
        scale: Sequence[float] = (0.9, 1.1),
        shear: float = 0.1,
        fill: int = 0,
    ) -> None:
        if degrees < 0:
            raise InvalidArgument("degrees", f"must be >= 0, got {degrees}")
        if shear < 0:
            raise InvalidArgument("shear", f"must be >= 0, got {shear}")
        super().__init__(
            degrees=float(degrees),
            scale=value_range(scale, "scale"),
            shear=float(shear),
            interpolation=v2.InterpolationMode.NEAREST,
            fill=fill,
        )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """No arguments: INPUT.AFFINE has only ENABLED."""
        return ConfigArgs()

    @staticmethod
    def enabled(cfg: CfgNode) -> bool:
        """INPUT.AFFINE.ENABLED."""
        return bool(AFFINE_CONFIG.value(cfg, "ENABLED"))
