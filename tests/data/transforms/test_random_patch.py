"""Random patch: fastreid's pool of patches from earlier images, pasted with INPUT.RPT.PROB."""

import math
from collections.abc import Callable

import pytest
import torch
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.transforms import RandomPatch, build_transforms


def _noise(seed: int, height: int = 32, width: int = 16) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed)) * 255


def reference_patch_size(height: int, width: int) -> tuple[int, int] | None:
    """fastreid's RandomPatch.generate_wh, drawing from torch's generator in the same order
    (without its empty patches: a side that rounds to 0 is a miss)."""
    for _ in range(100):
        target = (0.01 + 0.49 * float(torch.rand(()))) * height * width
        ratio = 0.1 + (10.0 - 0.1) * float(torch.rand(()))
        h, w = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w < width and 0 < h < height:
            return h, w
    return None


def test_patch_size_follows_fastreids_rule() -> None:
    step = RandomPatch()
    sizes = []
    for seed in range(120):
        torch.manual_seed(seed)
        size = step.patch_size(32, 16)
        torch.manual_seed(seed)
        assert size == reference_patch_size(32, 16)
        assert size is not None
        sizes.append(size)
    assert all(h < 32 and w < 16 for h, w in sizes)
    areas = [h * w / (32 * 16) for h, w in sizes]
    assert min(areas) < 0.05 and max(areas) > 0.3
    assert max(h / w for h, w in sizes) > 3  # tall patches happen (ratio up to 10)
    assert step.patch_size(1, 1) is None  # no patch fits strictly inside a 1 x 1 image


def test_pool_fills_before_any_paste_and_keeps_copies() -> None:
    step = RandomPatch(prob=1.0, min_sample_size=5)
    torch.manual_seed(0)
    for i in range(4):
        image = _noise(i)
        out = step(image.clone())
        assert torch.equal(out, image) and len(step.pool) == i + 1
    image = _noise(99)
    donor = image.clone()
    step(image)
    image.zero_()  # the pooled patch is a copy, not a view of the donor
    assert any(p.abs().sum() > 0 for p in step.pool) and len(step.pool) == 5
    assert not torch.equal(donor, image)


def test_paste_is_a_pooled_patch_maybe_mirrored_at_a_random_place() -> None:
    step = RandomPatch(prob=1.0, min_sample_size=1)
    torch.manual_seed(1)
    flips = 0
    for i in range(60):
        image = _noise(1000 + i)
        pool_before = list(step.pool)
        out = step(image.clone())
        changed = (out != image).any(0)
        if not changed.any():  # the pasted patch may be the one just cut from this image
            continue
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        candidates = pool_before + [step.pool[-1]]
        found = None
        for patch in candidates:
            h, w = patch.shape[-2:]
            # the changed box lies inside the pasted rectangle; look for an exact placement
            for y in range(max(0, int(rows[-1]) - h + 1), min(int(rows[0]), 32 - h) + 1):
                for x in range(max(0, int(cols[-1]) - w + 1), min(int(cols[0]), 16 - w) + 1):
                    region = out[:, y : y + h, x : x + w]
                    rest = out.clone()
                    rest[:, y : y + h, x : x + w] = image[:, y : y + h, x : x + w]
                    if not torch.equal(rest, image):
                        continue
                    if torch.equal(region, patch):
                        found = "plain"
                    elif torch.equal(region, patch.flip(-1)):
                        found = "mirrored"
        assert found is not None
        flips += found == "mirrored"
    assert 10 <= flips <= 50


def test_paste_probability_and_pool_capacity() -> None:
    step = RandomPatch(prob=0.3, pool_capacity=7, min_sample_size=1)
    torch.manual_seed(2)
    pasted = 0
    n = 600
    for i in range(n):
        image = _noise(i, 16, 8)
        pasted += not torch.equal(step(image.clone()), image)
        assert len(step.pool) == min(i + 1, 7)
    assert abs(pasted / n - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5


def test_last_step_after_random_erasing(input_cfg: Callable[..., CfgNode]) -> None:
    cfg = input_cfg(
        "INPUT.RPT.ENABLED", "True", "INPUT.RPT.PROB", "0.4", "INPUT.REA.ENABLED", "True"
    )
    t = build_transforms(cfg, is_train=True)
    names = [type(s).__name__ for s in t.transforms]
    assert names[-3:] == ["RandomErasing", "RandomPatch", "ToPureTensor"]
    assert repr(t.transforms[-2]) == repr(RandomPatch(prob=0.4))


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"^min_sample_size must be in \[1, pool_capacity\]"):
        RandomPatch(pool_capacity=5, min_sample_size=6)
    with pytest.raises(ValueError, match=r"^patch_area must lie in \(0, 1\]"):
        RandomPatch(patch_area=(0.1, 1.5))
    step = RandomPatch(prob=1.0, min_sample_size=1)
    step(_noise(0, 32, 16))
    step.pool[0] = torch.zeros(3, 40, 4)
    with pytest.raises(ValueError, match="does not fit a 8 x 4 image"):
        for _ in range(20):
            step(_noise(1, 8, 4))


def test_enabled_with_prob_zero_names_the_key(input_cfg: Callable[..., CfgNode]) -> None:
    with pytest.raises(ConfigError, match=r"^INPUT\.RPT\.PROB must be a probability in \(0, 1\]"):
        build_transforms(input_cfg("INPUT.RPT.ENABLED", "True", "INPUT.RPT.PROB", "0"), True)
