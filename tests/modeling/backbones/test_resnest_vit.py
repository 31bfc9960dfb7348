"""ResNeSt and ViT backbones: shapes, parameter counts, fastreid's keys, published weights."""

import logging
import math
import urllib.error

import pytest
import torch
import torch.nn.functional as F

from reid.config import ConfigError, InvalidArgument, load_config
from reid.modeling import build_model
from reid.modeling.backbones import build_backbone
from reid.modeling.backbones.resnest import RESNEST_SPECS, ResNeSt
from reid.modeling.backbones.vit import VisionTransformer
from reid.utils.checkpoint import WeightsMismatchError


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """A fresh torch hub cache (TORCH_HOME/hub/checkpoints) where nothing can be downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def refuse(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    directory = tmp_path / "torch" / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    return directory


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- ResNeSt ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnest50() -> ResNeSt:
    return ResNeSt("50x", last_stride=1).eval()


@pytest.fixture(scope="module")
def vit_small() -> VisionTransformer:
    return VisionTransformer((256, 128), "small", stride_size=(12, 12)).eval()


@pytest.mark.parametrize(
    "last_stride,size",
    [(1, (8, 4)), pytest.param(2, (4, 2), marks=pytest.mark.slow)],
)
def test_resnest50_output_and_parameters(resnest50, last_stride, size):
    model = resnest50 if last_stride == 1 else ResNeSt("50x", last_stride=2).eval()
    assert model.out_channels == 2048
    # ResNeSt-50 (radix 2, deep stem 32): 27,483,240 with its 1000-class fc (2,049,000).
    assert _params(model) == 27_483_240 - 2_049_000
    with torch.no_grad():
        assert model(torch.randn(2, 3, 128, 64)).shape == (2, 2048, *size)


def test_resnest_last_stride_1_dilates_layer4_after_its_first_block(resnest50):
    model = resnest50
    first, later = model.layer4[0], model.layer4[1]
    assert first.conv2.conv.dilation == (1, 1) and later.conv2.conv.dilation == (2, 2)
    assert first.avd_layer is not None and first.avd_layer.stride == 1  # fastreid's is_first pool
    assert model.layer4[0].downsample[0].kernel_size == 1  # no pooling on the shortcut
    assert model.layer1[0].avd_layer is None and model.layer2[0].avd_layer.stride == 2


def test_resnest_depths_and_stem_widths():
    assert {d: (blocks, stem) for d, (blocks, stem, _) in RESNEST_SPECS.items()} == {
        50: ((3, 4, 6, 3), 32),
        101: ((3, 4, 23, 3), 64),
        200: ((3, 24, 36, 3), 64),
        269: ((3, 30, 48, 8), 64),
    }
    with pytest.raises(InvalidArgument, match=r"^depth of ResNeSt must be one of '50x', "):
        ResNeSt("18x")


def test_resnest_from_the_config_refuses_ibn_and_se_and_ignores_non_local(caplog):
    base = ["MODEL.BACKBONE.NAME", "build_resnest_backbone", "MODEL.BACKBONE.PRETRAIN", "False"]
    for key in ("WITH_IBN", "WITH_SE"):
        with pytest.raises(ConfigError, match=f"^MODEL.BACKBONE.{key} is True, but build_resnest"):
            build_backbone(load_config(None, base + [f"MODEL.BACKBONE.{key}", "True"]))
    with caplog.at_level(logging.WARNING):
        model = build_backbone(load_config(None, base + ["MODEL.BACKBONE.WITH_NL", "True"]))
    assert isinstance(model, ResNeSt)
    assert "build_resnest_backbone has no non-local blocks: ignored, as fastreid" in caplog.text


@pytest.mark.slow
def test_resnest_published_weights_load_from_the_hub_cache(hub_dir):
    # The authors' file: this layout (their module names) plus the ImageNet classifier.
    source = ResNeSt("50x")
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in source.state_dict().items()
    }
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    torch.save(state, hub_dir / "resnest50-528c19ca.pth")
    model = build_backbone(
        load_config(
            None,
            ["MODEL.BACKBONE.NAME", "build_resnest_backbone", "MODEL.BACKBONE.PRETRAIN", "True"],
        )
    )
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


@pytest.mark.slow
def test_resnest_missing_published_file_names_it(hub_dir):
    with pytest.raises(RuntimeError, match="resnest50-528c19ca.pth.*no network"):
        ResNeSt("50x", pretrain=True)


@pytest.mark.slow
def test_resnest_weights_of_another_depth_are_an_error(tmp_path):
    path = tmp_path / "s50.pth"
    torch.save(ResNeSt("50x").state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="are MODEL.BACKBONE.NAME, DEPTH and WITH_IBN"):
        ResNeSt("101x", pretrain=True, pretrain_path=str(path))


# --- ViT --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vit_base_output_grid_and_parameters():
    model = VisionTransformer((256, 128), "base", stride_size=(16, 16)).eval()
    assert model.grid == (16, 8) and model.pos_embed.shape == (1, 129, 768)
    # timm's ViT-B/16: 86,567,656 with its classifier (769,000) and 197 position tokens.
    assert _params(model) == 86_567_656 - 769_000 - (197 - 129) * 768
    with torch.no_grad():
        assert model(torch.randn(2, 3, 256, 128)).shape == (2, 768, 1, 1)


def test_vit_overlapping_patches_and_the_small_variant(vit_small):
    model = vit_small
    assert model.grid == (21, 10)  # (256 - 16) // 12 + 1, (128 - 16) // 12 + 1
    assert len(model.blocks) == 8 and model.blocks[0].attn.num_heads == 8
    assert model.blocks[0].mlp.fc1.out_features == 3 * 768 and model.blocks[0].attn.qkv.bias is None
    attn = model.blocks[0].attn
    assert attn.qk_scale == 768**-0.5
    x = torch.randn(1, 5, 768)
    q, k, v = attn.qkv(x).reshape(1, 5, 3, 8, 96).permute(2, 0, 3, 1, 4)
    expected = ((q @ k.transpose(-2, -1)) * 768**-0.5).softmax(-1) @ v
    expected = attn.proj(expected.transpose(1, 2).reshape(1, 5, 768))
    torch.testing.assert_close(attn(x), expected)


def test_vit_drop_path_rises_to_the_configured_rate(vit_small):
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in vit_small.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)


@pytest.mark.slow
def test_vit_refuses_images_of_another_size():
    model = VisionTransformer((64, 32), "base").eval()
    with pytest.raises(
        ValueError, match="built for 64x32 images .*got 128x64: set INPUT.SIZE_TEST"
    ):
        model(torch.zeros(1, 3, 128, 64))


def test_vit_keys_from_the_config_and_sie_coe():
    opts = [
        "MODEL.BACKBONE.NAME", "build_vit_backbone", "MODEL.BACKBONE.DEPTH", "small",
        "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.STRIDE_SIZE", "(12, 12)",
        "MODEL.BACKBONE.DROP_RATIO", "0.1", "MODEL.BACKBONE.ATT_DROP_RATE", "0.05",
        "MODEL.BACKBONE.DROP_PATH_RATIO", "0.3", "INPUT.SIZE_TRAIN", "[64, 40]",
        "MODEL.BACKBONE.FEAT_DIM", "768",
    ]  # fmt: skip
    model = build_backbone(load_config(None, opts))
    assert model.img_size == (64, 40) and model.grid == (5, 3)
    assert model.pos_drop.p == 0.1 and model.blocks[0].attn.attn_drop.p == 0.05
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.3)
    with pytest.raises(
        ConfigError, match=r"^MODEL.BACKBONE.SIE_COE is 1.0, but the side information"
    ):
        build_backbone(load_config(None, opts + ["MODEL.BACKBONE.SIE_COE", "1.0"]))
    with pytest.raises(ConfigError, match=r"^MODEL.BACKBONE.DEPTH of the ViT must be one of"):
        build_backbone(load_config(None, opts + ["MODEL.BACKBONE.DEPTH", "50x"]))


def _published_vit(distilled: bool = False) -> dict[str, torch.Tensor]:
    """A published ViT-B/16 file's layout: 14 x 14 grid, classifier, (DeiT) distillation token."""
    state = VisionTransformer((224, 224), "base").state_dict()
    state = {k: torch.randn_like(v) for k, v in state.items()}
    state["head.weight"], state["head.bias"] = torch.randn(1000, 768), torch.randn(1000)
    if distilled:
        state["dist_token"] = torch.randn(1, 1, 768)
        state["head_dist.weight"] = torch.randn(1000, 768)
        pos = state["pos_embed"]
        state["pos_embed"] = torch.cat([pos[:, :1], torch.randn(1, 1, 768), pos[:, 1:]], dim=1)
    return state


def _resized_grid(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """fastreid's resize_pos_embed: bilinear interpolation of the square grid."""
    side = int(math.sqrt(pos.shape[1] - 1))
    tokens = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    tokens = F.interpolate(tokens, size=grid, mode="bilinear")
    return torch.cat([pos[:, :1], tokens.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], 1)


@pytest.mark.slow
@pytest.mark.parametrize("distilled", [False, True])
def test_vit_published_weights_load_with_the_position_embedding_resized(hub_dir, caplog, distilled):
    state = _published_vit(distilled)
    name = "jx_vit_base_p16_224-80ecf9dd.pth"
    torch.save(state, hub_dir / name)
    with caplog.at_level(logging.INFO):
        model = VisionTransformer((128, 64), "base", pretrain=True)
    assert "resized the position embedding" in caplog.text and "from 14x14 to 8x4" in caplog.text
    pos = state["pos_embed"]
    if distilled:
        pos = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
    torch.testing.assert_close(model.pos_embed.data, _resized_grid(pos, (8, 4)))
    for key, value in model.state_dict().items():
        if key != "pos_embed":
            torch.testing.assert_close(value, state[key], msg=key)


@pytest.mark.slow
def test_vit_identity_pool_model_and_errors():
    opts = [
        "MODEL.BACKBONE.NAME", "build_vit_backbone", "MODEL.BACKBONE.DEPTH", "small",
        "MODEL.BACKBONE.FEAT_DIM", "768", "MODEL.BACKBONE.PRETRAIN", "False",
        "MODEL.HEADS.POOL_LAYER", "Identity", "MODEL.HEADS.NUM_CLASSES", "3",
        "INPUT.SIZE_TRAIN", "[32, 32]", "MODEL.DEVICE", "cpu",
    ]  # fmt: skip
    model = build_model(load_config(None, opts)).eval()
    with torch.no_grad():
        assert model({"images": torch.rand(2, 3, 32, 32) * 255}).shape == (2, 768)
    resnet = [
        "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.PRETRAIN", "False",
        "MODEL.BACKBONE.FEAT_DIM", "0", "MODEL.HEADS.POOL_LAYER", "Identity",
        "MODEL.HEADS.NUM_CLASSES", "3", "MODEL.DEVICE", "cpu",
    ]  # fmt: skip
    model = build_model(load_config(None, resnet)).eval()
    with pytest.raises(ValueError, match='POOL_LAYER "Identity" expects an N x C x 1 x 1 feature'):
        model({"images": torch.zeros(1, 3, 64, 32)})
