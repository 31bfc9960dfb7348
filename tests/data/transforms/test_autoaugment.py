"""AutoAugment: fastreid's ImageNet policy with INPUT.AUTOAUG.PROB, first in the pipeline."""

from collections.abc import Callable

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.transforms import AutoAugment, TrainTransform, build_transforms

# fastreid 1.4.0, fastreid/data/transforms/autoaugment.py, auto_augment_policy_original (timm's
# "original" ImageNet policy of Cubuk et al.): the policy INPUT.AUTOAUG applies. Operations that
# take no magnitude carry one there (ignored); PosterizeOriginal is the paper's posterize.
FASTREID_IMAGENET_POLICY = [
    [("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)],
    [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
    [("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
    [("Equalize", 0.4, 4), ("Rotate", 0.8, 8)],
    [("Solarize", 0.6, 3), ("Equalize", 0.6, 7)],
    [("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)],
    [("Rotate", 0.2, 3), ("Solarize", 0.6, 8)],
    [("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)],
    [("Rotate", 0.8, 8), ("Color", 0.4, 0)],
    [("Rotate", 0.4, 9), ("Equalize", 0.6, 2)],
    [("Equalize", 0.0, 7), ("Equalize", 0.8, 8)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Rotate", 0.8, 8), ("Color", 1.0, 2)],
    [("Color", 0.8, 8), ("Solarize", 0.8, 7)],
    [("Sharpness", 0.4, 7), ("Invert", 0.6, 8)],
    [("ShearX", 0.6, 5), ("Equalize", 1.0, 9)],
    [("Color", 0.4, 0), ("Equalize", 0.6, 3)],
    [("Equalize", 0.4, 7), ("Solarize", 0.2, 4)],
    [("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)],
    [("Invert", 0.6, 4), ("Equalize", 1.0, 8)],
    [("Color", 0.6, 4), ("Contrast", 1.0, 8)],
    [("Equalize", 0.8, 8), ("Equalize", 0.6, 3)],
]
NO_MAGNITUDE = {"AutoContrast", "Equalize", "Invert"}


def test_the_policy_is_fastreids_imagenet_policy() -> None:
    inner = AutoAugment(prob=0.5).transforms[0]
    assert isinstance(inner, v2.AutoAugment) and inner.policy == v2.AutoAugmentPolicy.IMAGENET
    expected = [
        [
            (name.replace("Original", ""), p, None if name in NO_MAGNITUDE else level)
            for name, p, level in sub
        ]
        for sub in FASTREID_IMAGENET_POLICY
    ]
    assert [[tuple(op) for op in sub] for sub in inner._policies] == expected


def test_applied_with_the_probability_and_seeded(noise: Callable[..., Image.Image]) -> None:
    image = F.pil_to_tensor(noise(1))
    step = AutoAugment(prob=0.3)
    reference = v2.AutoAugment(
        v2.AutoAugmentPolicy.IMAGENET, interpolation=v2.InterpolationMode.BILINEAR, fill=128
    )
    applied = 0
    for seed in range(60):
        torch.manual_seed(seed)
        out = step(image)
        torch.manual_seed(seed)
        apply = bool(torch.rand(1) < 0.3)  # RandomApply's draw, then the policy's draws
        expected = reference(image) if apply else image
        assert torch.equal(out, expected)
        applied += apply
    assert 10 <= applied <= 30  # ~ 0.3 x 60


def test_geometric_operations_fill_with_grey() -> None:
    # A shear of a white image, as the policy applies it: the uncovered corner takes grey 128
    # (timm's fill; torchvision's default is black).
    inner = AutoAugment(prob=1.0).transforms[0]
    assert inner.interpolation == v2.InterpolationMode.BILINEAR
    white = torch.full((3, 40, 20), 255, dtype=torch.uint8)
    sheared = inner._apply_image_or_video_transform(
        white, "ShearX", 0.3, interpolation=inner.interpolation, fill=inner._fill
    )
    assert sheared[:, -1, -1].tolist() == [128, 128, 128]
    assert int(sheared[:, 0, 0].min()) == 255 and int(sheared.min()) > 100  # never black


def test_first_step_of_the_pipeline_on_the_loaded_image(
    noise: Callable[..., Image.Image], input_cfg: Callable[..., CfgNode]
) -> None:
    t = build_transforms(
        input_cfg("INPUT.AUTOAUG.ENABLED", "True", "INPUT.AUTOAUG.PROB", "0.1"), is_train=True
    )
    assert isinstance(t, TrainTransform)
    names = [type(s).__name__ for s in t.transforms]
    assert names[:4] == ["ToRGB", "ToImage", "AutoAugment", "Resize"]
    assert repr(t.transforms[2]) == repr(AutoAugment(prob=0.1))
    # the policy sees the image at its loaded size: with p = 1 a 40 x 20 image reaches it
    seen = []
    step = AutoAugment(prob=1.0)
    step.transforms[0].forward = lambda image: seen.append(tuple(image.shape)) or image
    TrainTransform(size=(32, 16), autoaugment=step)(noise(2, size=(20, 40)))
    assert seen == [(3, 40, 20)]


def test_disabled_by_default_and_prob_zero_is_an_error(input_cfg: Callable[..., CfgNode]) -> None:
    names = [type(s).__name__ for s in build_transforms(input_cfg(), is_train=True).transforms]
    assert "AutoAugment" not in names
    with pytest.raises(
        ConfigError, match=r"^INPUT\.AUTOAUG\.PROB must be a probability in \(0, 1\]"
    ):
        build_transforms(input_cfg("INPUT.AUTOAUG.ENABLED", "True"), is_train=True)
    with pytest.raises(ValueError, match=r"^prob must be a probability in \(0, 1\].*got 1.5"):
        AutoAugment(prob=1.5)
    with pytest.raises(ValueError, match=r"^fill must be 1 or 3 whole values in 0..255"):
        AutoAugment(fill=(128, 300, 0))
