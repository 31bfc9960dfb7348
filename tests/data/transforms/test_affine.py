"""Random affine: fastreid's fixed rotation, scale and shear, nearest-neighbour, black fill."""

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from yacs.config import CfgNode

from reid.data.transforms import RandomAffine, build_transforms


def test_fastreids_parameters() -> None:
    step = RandomAffine()
    assert step.degrees == [-10.0, 10.0] and step.scale == (0.9, 1.1)
    assert step.shear == [-0.1, 0.1] and step.translate is None
    assert step.interpolation == v2.InterpolationMode.NEAREST and step.fill == 0


def test_nearest_neighbour_and_black_fill_only(noise: Callable[..., Image.Image]) -> None:
    image = F.pil_to_tensor(noise(5, size=(16, 32)))
    values = {tuple(p) for p in image.flatten(1).T.tolist()} | {(0, 0, 0)}
    step = RandomAffine()
    torch.manual_seed(0)
    moved = filled = 0
    for _ in range(30):
        out = step(image)
        pixels = {tuple(p) for p in out.flatten(1).T.tolist()}
        assert pixels <= values  # no interpolated colour, black where uncovered
        moved += not torch.equal(out, image)
        filled += (0, 0, 0) in pixels
    assert moved >= 25 and filled > 15  # a tiny draw can round to the identity


def test_rotation_stays_within_ten_degrees() -> None:
    # A bar through the centre: after the transform its angle is within 10 degrees (+ shear).
    bar = torch.zeros(1, 41, 41, dtype=torch.uint8)
    bar[0, 20, 5:36] = 255
    step = RandomAffine()
    torch.manual_seed(1)
    angles = []
    for _ in range(40):
        ys, xs = step(bar)[0].nonzero(as_tuple=True)
        slope = torch.linalg.lstsq(
            torch.stack([xs.float(), torch.ones_like(xs, dtype=torch.float)], 1),
            ys.float()[:, None],
        ).solution[0, 0]
        angles.append(float(torch.rad2deg(torch.atan(slope))))
    assert max(abs(a) for a in angles) <= 10.5 and max(abs(a) for a in angles) > 5


def test_enabled_by_its_key_after_colour_jitter(input_cfg: Callable[..., CfgNode]) -> None:
    cfg = input_cfg("INPUT.AFFINE.ENABLED", "True", "INPUT.CJ.ENABLED", "True")
    names = [type(s).__name__ for s in build_transforms(cfg, is_train=True).transforms]
    assert names.index("RandomAffine") == names.index("ColorJitter") + 1
    names = [type(s).__name__ for s in build_transforms(input_cfg(), is_train=True).transforms]
    assert "RandomAffine" not in names
