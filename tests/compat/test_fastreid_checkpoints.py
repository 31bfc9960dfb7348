"""fastreid checkpoints given as MODEL.WEIGHTS give fastreid's test features, family by family.

Each test builds fastreid 1.4.0's own model from a config (the model keys of fastreid's
configs/Base-*.yml and of its per-dataset files), randomises every tensor of its state with a
seed (norms, running statistics, non-local and GeM parameters too, so that a wrong mapping shows),
saves it with fastreid's Checkpointer, loads that file into reid the way ``--eval-only`` does
(:func:`reid.engine.build_model_for_eval` with MODEL.WEIGHTS) and compares the test features of
the same images. fastreid is installed without its dependencies (it pins torch 1.13.1):
``pip install --no-deps fastreid==1.4.0`` (INSTALL.md); without it these tests are skipped.
"""

from __future__ import annotations

import importlib.metadata
import os

import pytest
import torch

from reid.config import load_config
from reid.engine import build_model_for_eval

try:
    import fastreid
    from fastreid.config import get_cfg as fastreid_cfg
    from fastreid.modeling import build_model as fastreid_build_model
    from fastreid.utils.checkpoint import Checkpointer as FastreidCheckpointer
except ImportError as e:  # not installed, or a dependency it imports is missing
    pytest.skip(
        f"fastreid 1.4.0 is not importable ({e}): pip install --no-deps fastreid==1.4.0 "
        f"termcolor tabulate (see INSTALL.md)",
        allow_module_level=True,
    )

NUM_CLASSES = 11
SIZE = (128, 64)  # the real layouts at a small input: R50's map is 8 x 4
# MGN: a map of height 10, which torch.chunk cuts into stripes of 4, 4, 2 rows (balanced: 4, 3, 3).
MGN_SIZE = (160, 64)

# fastreid's configs/Base-bagtricks.yml (model keys).
BAGTRICKS = [
    "MODEL.META_ARCHITECTURE", "Baseline",
    "MODEL.BACKBONE.NAME", "build_resnet_backbone",
    "MODEL.BACKBONE.DEPTH", "50x",
    "MODEL.BACKBONE.LAST_STRIDE", "1",
    "MODEL.BACKBONE.FEAT_DIM", "2048",
    "MODEL.HEADS.NAME", "EmbeddingHead",
    "MODEL.HEADS.WITH_BNNECK", "True",
    "MODEL.HEADS.POOL_LAYER", "GlobalAvgPool",
    "MODEL.HEADS.NECK_FEAT", "before",
    "MODEL.HEADS.CLS_LAYER", "Linear",
]  # fmt: skip
# configs/Base-AGW.yml on top.
AGW = BAGTRICKS + [
    "MODEL.BACKBONE.WITH_NL", "True",
    "MODEL.HEADS.POOL_LAYER", "GeneralizedMeanPooling",
]  # fmt: skip
# configs/Base-SBS.yml on top of Base-bagtricks.yml.
SBS = BAGTRICKS + [
    "MODEL.BACKBONE.WITH_NL", "True",
    "MODEL.HEADS.NECK_FEAT", "after",
    "MODEL.HEADS.POOL_LAYER", "GeneralizedMeanPoolingP",
    "MODEL.HEADS.CLS_LAYER", "CircleSoftmax",
    "MODEL.HEADS.SCALE", "64",
    "MODEL.HEADS.MARGIN", "0.35",
]  # fmt: skip
# configs/Base-MGN.yml on top of Base-SBS.yml.
MGN = SBS + [
    "MODEL.META_ARCHITECTURE", "MGN",
    "MODEL.BACKBONE.WITH_NL", "False",
    "MODEL.HEADS.EMBEDDING_DIM", "256",
]  # fmt: skip
IBN = ["MODEL.BACKBONE.WITH_IBN", "True"]
R101 = ["MODEL.BACKBONE.DEPTH", "101x"]

FAMILIES = {
    "bagtricks_R50": BAGTRICKS,
    "bagtricks_R50-ibn": BAGTRICKS + IBN,
    "bagtricks_R50-se": BAGTRICKS + ["MODEL.BACKBONE.WITH_SE", "True"],
    "AGW_R50": AGW,
    "sbs_R50-ibn": SBS + IBN,
    "mgn_R50-ibn": MGN + IBN,
    "bagtricks_S50": BAGTRICKS + ["MODEL.BACKBONE.NAME", "build_resnest_backbone"],
    "sbs_S50": SBS + ["MODEL.BACKBONE.NAME", "build_resnest_backbone"],
}
# fastreid's configs/Market1501/bagtricks_vit.yml (model keys).
VIT = BAGTRICKS + [
    "MODEL.PIXEL_MEAN", "[127.5, 127.5, 127.5]",
    "MODEL.PIXEL_STD", "[127.5, 127.5, 127.5]",
    "MODEL.BACKBONE.NAME", "build_vit_backbone",
    "MODEL.BACKBONE.DEPTH", "base",
    "MODEL.BACKBONE.FEAT_DIM", "768",
    "MODEL.BACKBONE.STRIDE_SIZE", "(16, 16)",
    "MODEL.BACKBONE.DROP_PATH_RATIO", "0.1",
    "MODEL.HEADS.POOL_LAYER", "Identity",
]  # fmt: skip
FAMILIES["bagtricks_vit"] = VIT
FAMILIES["bagtricks_vit-small-overlap"] = VIT + [
    "MODEL.BACKBONE.DEPTH", "small",
    "MODEL.BACKBONE.STRIDE_SIZE", "(12, 12)",
]  # fmt: skip

SLOW_FAMILIES = {
    "bagtricks_R101-ibn": BAGTRICKS + IBN + R101,
    "AGW_R101-ibn": AGW + IBN + R101,
    "sbs_R101-ibn": SBS + IBN + R101,
    "mgn_R50": MGN,
    "bagtricks_S101": BAGTRICKS + ["MODEL.BACKBONE.NAME", "build_resnest_backbone"] + R101,
    "AGW_S50": AGW + ["MODEL.BACKBONE.NAME", "build_resnest_backbone"],
}


def _common(size: tuple[int, int]) -> list[str]:
    return [
        "MODEL.DEVICE", "cpu",
        "MODEL.BACKBONE.PRETRAIN", "False",
        "MODEL.HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "INPUT.SIZE_TRAIN", str(list(size)),
        "INPUT.SIZE_TEST", str(list(size)),
    ]  # fmt: skip


def randomise(model: torch.nn.Module, seed: int, size: tuple[int, int]) -> None:
    """Seeded random values for every floating tensor of the model's state, with activations
    that stay finite through 100 layers: norm scales in [0.5, 1.5], shifts N(0, 0.1), GeM powers in
    [2.5, 3.5], convolution and linear weights from fastreid's (seeded) initialisation, then the
    batch norms' running statistics measured on 8 random images (momentum 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            leaf = name.rsplit(".", 1)[-1]
            if not tensor.is_floating_point() or leaf.startswith("running_"):
                continue
            if leaf == "weight" and tensor.dim() == 1:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=g))
            elif leaf == "p":
                tensor.copy_(2.5 + torch.rand(tensor.shape, generator=g))
            elif tensor.dim() == 1:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=g))
        model.eval()
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.train()
            m.momentum = 1.0
        calibration = torch.rand(8, 3, *size, generator=g) * 255
        model({"images": calibration})
        model.eval()


def fastreid_features(
    opts: list[str], tmp_path, images: torch.Tensor, seed: int = 0
) -> tuple[str, torch.Tensor]:
    """fastreid's model of ``opts``, randomised, saved as model_final.pth; and its features."""
    cfg = fastreid_cfg()
    cfg.merge_from_list(opts)
    torch.manual_seed(seed)
    model = fastreid_build_model(cfg)
    randomise(model, seed, tuple(images.shape[2:]))
    model.eval()
    with torch.no_grad():
        feats = model({"images": images.clone()})  # fastreid normalises its input in place
    FastreidCheckpointer(model, str(tmp_path)).save("model_final")
    return os.path.join(str(tmp_path), "model_final.pth"), feats


def reid_features(opts: list[str], weights: str, images: torch.Tensor) -> torch.Tensor:
    cfg = load_config(None, opts + ["MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "0"])
    model = build_model_for_eval(cfg).eval()
    with torch.no_grad():
        return model({"images": images})


def _images(size: tuple[int, int], n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(5)) * 255


def check_family(opts: list[str], tmp_path) -> None:
    size = MGN_SIZE if "MGN" in opts else SIZE
    opts = opts + _common(size)
    images = _images(size)
    weights, expected = fastreid_features(opts, tmp_path, images)
    got = reid_features(opts, weights, images)
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    assert scale > 0 and torch.isfinite(expected).all()
    # The CNNs compute the same operations in the same order (the features are bitwise equal);
    # the ViT's attention runs in timm's (fused) kernels and reid's squeeze-and-excitation in 1x1
    # convolutions where fastreid's has linear layers: float32 rounding, 1e-5 of the scale.
    rounding = "build_vit_backbone" in opts or "MODEL.BACKBONE.WITH_SE" in opts
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=(5e-5 if rounding else 1e-6) * scale)


def test_fastreid_is_the_version_compared_against():
    # The 1.4.0 wheel's fastreid.__version__ still reads "1.3"; the distribution's is the release.
    assert importlib.metadata.version("fastreid") == "1.4.0"
    assert os.path.dirname(fastreid.__file__).endswith("fastreid")


# In the fast tier: SBS (IBN, non-local, GeM with a learned p, circle classifier, neck "after").
FAST = {"sbs_R50-ibn"}


@pytest.mark.parametrize(
    "family",
    [f if f in FAST else pytest.param(f, marks=pytest.mark.slow) for f in sorted(FAMILIES)],
)
def test_fastreid_checkpoint_gives_fastreids_features(family, tmp_path):
    check_family(FAMILIES[family], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(SLOW_FAMILIES))
def test_fastreid_checkpoint_gives_fastreids_features_deep(family, tmp_path):
    check_family(SLOW_FAMILIES[family], tmp_path)
