"""Random patch (Zhou et al., OSNet, ICCV 2019; fastreid's INPUT.RPT).

Occlusion from other images: every image given to the transform first donates a random patch to
a pool (an area fraction in [0.01, 0.5] of the image and an aspect ratio h / w in [0.1, 10]);
once the pool holds ``min_sample_size`` patches, with probability ``prob`` a patch drawn from the
pool, mirrored with probability 1/2, is pasted at a random position. fastreid places it last, on
the float tensor after random erasing.

The pool lives in the transform object, so each data-loader worker has its own, as in fastreid.
Randomness comes from torch's generator (seeded per worker). One difference from fastreid: the
pool keeps a copy of each patch; fastreid keeps a view into the donor image, which a paste into
that same image can overwrite afterwards.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable, declare

from .common import probability, value_range

RPT_CONFIG = declare(
    ConfigBlock(
        "INPUT.RPT",
        "Random patch (fastreid's INPUT.RPT).",
        {
            "ENABLED": Key(
                False,
                "Paste a patch taken from earlier training images at a random position, last "
                "step of the pipeline (after random erasing).",
            ),
            "PROB": Key(
                0.5,
                "Probability of pasting a patch (once the pool holds 100 patches); must be > 0 "
                "when ENABLED.",
            ),
        },
    )
)

ATTEMPTS = 100


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(low: int, high: int) -> int:
    """A whole number in [low, high], both included."""
    return int(torch.randint(low, high + 1, ()))


class RandomPatch:
    """Pastes patches from a pool of patches cut from earlier images (C x H x W tensors, in place).

    Args:
        prob: Probability of pasting a patch, in (0, 1].
        pool_capacity: Patches kept (the oldest are dropped first).
        min_sample_size: Patches the pool must hold before any is pasted.
        patch_area: [min, max] fraction of the image area a donated patch covers.
        patch_min_ratio: Smallest aspect ratio h / w of a patch; the largest is its inverse.
        flip_prob: Probability of mirroring a patch before pasting it.
    """

    config_block = RPT_CONFIG

    @configurable
    def __init__(
        self,
        prob: float = 0.5,
        pool_capacity: int = 50000,
        min_sample_size: int = 100,
        patch_area: tuple[float, float] = (0.01, 0.5),
        patch_min_ratio: float = 0.1,
        flip_prob: float = 0.5,
    ) -> None:
        self.prob = probability(prob, "prob", allow_zero=False)
        if pool_capacity < 1:
            raise InvalidArgument("pool_capacity", f"must be >= 1, got {pool_capacity}")
        if not 1 <= min_sample_size <= pool_capacity:
            raise InvalidArgument(
                "min_sample_size", f"must be in [1, pool_capacity], got {min_sample_size}"
            )
        self.area = value_range(patch_area, "patch_area")
        if self.area[1] > 1.0:
            raise InvalidArgument("patch_area", f"must lie in (0, 1], got {list(patch_area)}")
        if not 0.0 < patch_min_ratio <= 1.0:
            raise InvalidArgument("patch_min_ratio", f"must be in (0, 1], got {patch_min_ratio}")
        self.min_ratio = float(patch_min_ratio)
        self.flip_prob = probability(flip_prob, "flip_prob")
        self.min_sample_size = min_sample_size
        self.pool: deque[torch.Tensor] = deque(maxlen=pool_capacity)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """``prob`` from INPUT.RPT.PROB."""
        return RPT_CONFIG.arguments(cfg, skip=("ENABLED",))

    @staticmethod
    def enabled(cfg: CfgNode) -> bool:
        """INPUT.RPT.ENABLED."""
        return bool(RPT_CONFIG.value(cfg, "ENABLED"))

    def patch_size(self, height: int, width: int) -> tuple[int, int] | None:
        """A random (h, w) strictly inside ``height`` x ``width``; None after 100 misses.

        fastreid also accepts a size that rounds to 0 (on tiny images): an empty patch.
        """
        area = height * width
        for _ in range(ATTEMPTS):
            target = _uniform(*self.area) * area
            ratio = _uniform(self.min_ratio, 1.0 / self.min_ratio)
            h = round(math.sqrt(target * ratio))
            w = round(math.sqrt(target / ratio))
            if 1 <= w < width and 1 <= h < height:
                return h, w
        return None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        size = self.patch_size(height, width)
        if size is not None:
            h, w = size
            y, x = _randint(0, height - h), _randint(0, width - w)
            self.pool.append(image[..., y : y + h, x : x + w].clone())
        if len(self.pool) < self.min_sample_size or float(torch.rand(())) > self.prob:
            return image
        patch = self.pool[int(torch.randint(len(self.pool), ()))]
        h, w = patch.shape[-2:]
        if h > height or w > width:
            raise ValueError(
                f"RandomPatch: a pooled {h} x {w} patch does not fit a {height} x {width} image; "
                f"the training images must all have one size"
            )
        y, x = _randint(0, height - h), _randint(0, width - w)
        if float(torch.rand(())) < self.flip_prob:
            patch = patch.flip(-1)
        image[..., y : y + h, x : x + w] = patch
        return image

    def __repr__(self) -> str:
        return (
            f"RandomPatch(prob={self.prob}, pool_capacity={self.pool.maxlen}, "
            f"min_sample_size={self.min_sample_size}, patch_area={self.area}, "
            f"patch_min_ratio={self.min_ratio}, flip_prob={self.flip_prob})"
        )
