"""AugMix: torchvision's mixing with fastreid's parameters, applied with INPUT.AUGMIX.PROB."""

from collections.abc import Callable

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.data.transforms import AugMix, build_transforms

# fastreid 1.4.0 fastreid/data/transforms/functional.py: the operations its AugMix draws from.
FASTREID_AUGMIX_OPS = {
    "AutoContrast",
    "Equalize",
    "Posterize",
    "Rotate",
    "Solarize",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
}


def test_fastreids_parameters_in_torchvisions_augmix() -> None:
    inner = AugMix(prob=0.5).transforms[0]
    assert isinstance(inner, v2.AugMix)
    assert (inner.mixture_width, inner.chain_depth, inner.alpha, inner.all_ops) == (
        3,
        1,
        0.1,
        False,
    )
    assert set(inner._PARTIAL_AUGMENTATION_SPACE) == FASTREID_AUGMIX_OPS
    # severity 2: rotations of 0 or 30/9 degrees; fastreid's severity 1 rotates by
    # int(u * 30 / 10) degrees, u ~ U(0.1, 1): 0 to 3.
    rotate, signed = inner._PARTIAL_AUGMENTATION_SPACE["Rotate"]
    reachable = rotate(10, 32, 16)[: inner.severity].tolist()
    assert signed and reachable == pytest.approx([0.0, 30 / 9])


def test_seeded_mixture_with_the_probability(noise: Callable[..., Image.Image]) -> None:
    image = F.pil_to_tensor(noise(3))
    step = AugMix(prob=0.4)
    reference = v2.AugMix(severity=2, mixture_width=3, chain_depth=1, alpha=0.1, all_ops=False)
    applied = changed = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = step(image)
        torch.manual_seed(seed)
        apply = bool(torch.rand(1) < 0.4)
        assert torch.equal(out, reference(image) if apply else image)
        assert out.dtype == torch.uint8 and out.shape == image.shape
        applied += apply
        changed += not torch.equal(out, image)
    assert 8 <= applied <= 26 and changed <= applied


def test_after_affine_before_the_float_conversion(input_cfg: Callable[..., CfgNode]) -> None:
    t = build_transforms(
        input_cfg(
            "INPUT.AUGMIX.ENABLED",
            "True",
            "INPUT.AUGMIX.PROB",
            "0.3",
            "INPUT.AFFINE.ENABLED",
            "True",
        ),
        is_train=True,
    )
    names = [type(s).__name__ for s in t.transforms]
    assert names[names.index("RandomAffine") + 1 : names.index("RandomAffine") + 3] == [
        "AugMix",
        "ToDtype",
    ]
    assert repr(t.transforms[names.index("AugMix")]) == repr(AugMix(prob=0.3))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"prob": 0.0}, r"^prob must be a probability in \(0, 1\]"),
        ({"severity": 11}, "^severity must be in 1..10, got 11"),
        ({"chain_depth": 0}, "^chain_depth must be >= 1 or -1, got 0"),
        ({"alpha": 0.0}, "^alpha must be > 0, got 0.0"),
    ],
)
def test_argument_errors(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugMix(**arguments)


def test_enabled_with_fastreids_default_prob_zero_is_an_error(
    input_cfg: Callable[..., CfgNode],
) -> None:
    with pytest.raises(ConfigError, match=r"^INPUT\.AUGMIX\.PROB must be a probability in \(0"):
        build_transforms(input_cfg("INPUT.AUGMIX.ENABLED", "True"), is_train=True)
