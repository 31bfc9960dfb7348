"""AugMix (Hendrycks et al., ICLR 2020), applied with a probability.

fastreid's INPUT.AUGMIX: with probability PROB, ``mixed = (1 - m) * image + m * sum_i w_i
chain_i(image)`` with m ~ Beta(0.1, 0.1), w ~ Dirichlet(0.1, 0.1, 0.1), three chains of one
operation each, drawn from autocontrast, equalize, posterize, rotate, solarize, shear x/y and
translate x/y at severity 1; placed after the affine step, before the conversion to float.

Here the mixing is torchvision's ``v2.AugMix`` with those parameters (alpha 0.1 for both the Beta
and the Dirichlet draw, mixture width 3, chain depth 1, the nine operations: ``all_ops=False``).
torchvision scales magnitudes on 10 bins and draws the bin below ``severity``: severity 2 gives
magnitudes 0 or 1/9 of each operation's maximum (rotate 0 or 3.3 degrees, translate 0 or 1/27 of
the side), the range fastreid's severity 1 spans (uniformly 1 % to 10 % of the maximum: rotate
0 to 2 degrees, translate up to 1/30 of the side); severity 1 would make every geometric
operation the identity.
"""

from __future__ import annotations

from torchvision.transforms import v2
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable, declare

from .common import probability

AUGMIX_CONFIG = declare(
    ConfigBlock(
        "INPUT.AUGMIX",
        "AugMix (fastreid's INPUT.AUGMIX).",
        {
            "ENABLED": Key(
                False,
                "Apply AugMix (torchvision's, with fastreid's parameters) with probability PROB, "
                "after the affine step.",
            ),
            "PROB": Key(
                0.0, "Probability of applying AugMix to an image; must be > 0 when ENABLED."
            ),
        },
    )
)


class AugMix(v2.RandomApply):
    """With probability ``prob``, the AugMix mixture of the image and three augmented copies.

    Args:
        prob: Probability of mixing an image, in (0, 1].
        severity: torchvision's severity (1..10): magnitudes are drawn from the lowest
            ``severity`` of 10 bins.
        mixture_width: Augmentation chains mixed.
        chain_depth: Operations per chain (-1: 1 to 3 at random).
        alpha: Concentration of the Dirichlet mixing weights and of the Beta blend.
    """

    config_block = AUGMIX_CONFIG

    @configurable
    def __init__(
        self,
        prob: float = 0.5,
        severity: int = 2,
        mixture_width: int = 3,
        chain_depth: int = 1,
        alpha: float = 0.1,
    ) -> None:
        p = probability(prob, "prob", allow_zero=False)
        if not 1 <= severity <= 10:
            raise InvalidArgument("severity", f"must be in 1..10, got {severity}")
        if mixture_width < 1:
            raise InvalidArgument("mixture_width", f"must be >= 1, got {mixture_width}")
        if chain_depth == 0 or chain_depth < -1:
            raise InvalidArgument("chain_depth", f"must be >= 1 or -1, got {chain_depth}")
        if alpha <= 0:
            raise InvalidArgument("alpha", f"must be > 0, got {alpha}")
        augmix = v2.AugMix(
            severity=severity,
            mixture_width=mixture_width,
            chain_depth=chain_depth,
            alpha=alpha,
            all_ops=False,
            interpolation=v2.InterpolationMode.BILINEAR,
        )
        super().__init__([augmix], p=p)
        self.settings = dict(
            severity=severity, mixture_width=mixture_width, chain_depth=chain_depth, alpha=alpha
        )

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"AugMix(prob={self.p}, {settings})"

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """``prob`` from INPUT.AUGMIX.PROB."""
        return AUGMIX_CONFIG.arguments(cfg, skip=("ENABLED",))

    @staticmethod
    def enabled(cfg: CfgNode) -> bool:
        """INPUT.AUGMIX.ENABLED."""
        return bool(AUGMIX_CONFIG.value(cfg, "ENABLED"))
