"""AutoAugment (Cubuk et al., CVPR 2019) with the ImageNet policy, applied with a probability.

fastreid's INPUT.AUTOAUG: ``RandomApply([AutoAugment()], p=PROB)`` as the first step of the
training pipeline, on the image as loaded (before any resize), from the first iteration on.
fastreid's AutoAugment is timm's "original" policy: the 25 ImageNet sub-policies of the paper,
each a pair of (operation, probability, magnitude). Here the same policy runs in torchvision's
implementation (``v2.AutoAugment(AutoAugmentPolicy.IMAGENET)``), which maps magnitudes to
strengths on its own 10-bin scale; geometric operations fill with grey 128 (timm's fill) and
resample bilinearly.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable, declare

from .common import probability

AUTOAUG_CONFIG = declare(
    ConfigBlock(
        "INPUT.AUTOAUG",
        "AutoAugment, ImageNet policy (fastreid's INPUT.AUTOAUG).",
        {
            "ENABLED": Key(
                False,
                "Apply AutoAugment (ImageNet policy, torchvision's implementation) to the loaded "
                "image, before the resize, with probability PROB.",
            ),
            "PROB": Key(
                0.0,
                "Probability of applying AutoAugment to an image; must be > 0 when ENABLED "
                "(fastreid's configs use 0.1).",
            ),
        },
    )
)

FILL = (128, 128, 128)


class AutoAugment(v2.RandomApply):
    """With probability ``prob``, one random ImageNet sub-policy of AutoAugment.

    Args:
        prob: Probability of augmenting an image, in (0, 1].
        fill: Fill of the area geometric operations uncover, per channel (0..255).
    """

    config_block = AUTOAUG_CONFIG

    @configurable
    def __init__(self, prob: float = 0.1, fill: Sequence[int] = FILL) -> None:
        p = probability(prob, "prob", allow_zero=False)
        if len(fill) not in (1, 3) or any(int(v) != v or not 0 <= v <= 255 for v in fill):
            raise InvalidArgument(
                "fill", f"must be 1 or 3 whole values in 0..255, got {list(fill)}"
            )
        self.fill = [int(v) for v in fill]
        augment = v2.AutoAugment(
            v2.AutoAugmentPolicy.IMAGENET,
            interpolation=v2.InterpolationMode.BILINEAR,
            fill=self.fill,
        )
        super().__init__([augment], p=p)

    def __repr__(self) -> str:
        return (
            f"AutoAugment(prob={self.p}, policy=imagenet, interpolation=bilinear, fill={self.fill})"
        )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """``prob`` from INPUT.AUTOAUG.PROB."""
        return AUTOAUG_CONFIG.arguments(cfg, skip=("ENABLED",))

    @staticmethod
    def enabled(cfg: CfgNode) -> bool:
        """INPUT.AUTOAUG.ENABLED."""
        return bool(AUTOAUG_CONFIG.value(cfg, "ENABLED"))
