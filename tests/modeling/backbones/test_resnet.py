import pytest
import torch
import torchvision
from torch import nn

from reid.config import ConfigError, InvalidArgument, load_config
from reid.modeling.backbones import BACKBONE_REGISTRY, ResNet, build_backbone, parse_depth
from reid.modeling.layers import IBN, FrozenBatchNorm, NonLocalBlock, SELayer
from reid.utils.registry import RegistryKeyError


def _images(h: int = 64, w: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, h, w)


@pytest.mark.parametrize("depth, channels", [("18x", 512), ("34x", 512)])
@pytest.mark.parametrize("last_stride, size", [(1, (4, 2)), (2, (2, 1))])
def test_output_shape_and_last_stride(depth, channels, last_stride, size):
    backbone = ResNet(depth, last_stride=last_stride)
    assert backbone.out_channels == channels
    assert backbone(_images()).shape == (2, channels, *size)


def test_last_stride_only_changes_layer4():
    s1, s2 = ResNet(18, last_stride=1), ResNet(18, last_stride=2)
    assert s1.layer4[0].conv1.stride == (1, 1) and s1.layer4[0].downsample[0].stride == (1, 1)
    assert s2.layer4[0].conv1.stride == (2, 2) and s2.layer4[0].downsample[0].stride == (2, 2)
    assert s1.layer3[0].conv1.stride == s2.layer3[0].conv1.stride == (2, 2)
    s2.load_state_dict(s1.state_dict())
    s1.eval(), s2.eval()
    x = _images(128, 64)
    f1, f2 = s1(x), s2(x)
    assert f1.shape == (2, 512, 8, 4) and f2.shape == (2, 512, 4, 2)
    # Same weights: the stride-2 map samples the stride-1 computation of layer4's first conv.
    trunk = nn.Sequential(s1.conv1, s1.bn1, s1.relu, s1.maxpool, s1.layer1, s1.layer2, s1.layer3)
    with torch.no_grad():
        pre = trunk(x)
        torch.testing.assert_close(s2.layer4[0].conv1(pre), s1.layer4[0].conv1(pre)[:, :, ::2, ::2])


def test_set_stride_of_a_bottleneck_keeps_its_parameters():
    model = ResNet(50, last_stride=2)
    block = model.layer4[0].eval()
    x = torch.randn(1, 1024, 4, 2)
    assert block(x).shape == (1, 2048, 2, 1)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    block.set_stride(1)
    assert (
        block.conv2.stride == (1, 1)
        and block.downsample[0].stride == (1, 1)
        and block.conv1.stride == (1, 1)
    )
    assert block(x).shape == (1, 2048, 4, 2)
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())


def test_same_architecture_as_torchvision_when_loaded_with_its_weights():
    tv = torchvision.models.resnet18().eval()
    ours = ResNet(18, last_stride=2, stem_pool="padded").eval()
    missing, unexpected = ours.load_state_dict(tv.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]
    x = _images(64, 64)
    with torch.no_grad():
        expected = tv.layer4(
            tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))))))
        )
        torch.testing.assert_close(ours(x), expected)


def test_ibn_placement_resnet18():
    model = ResNet(18, with_ibn=True)
    assert type(model.bn1) is nn.BatchNorm2d  # the stem keeps plain BN (IBN-Net's resnet*_ibn_a)
    for stage, layer in enumerate(model.stages(), start=1):
        for block in layer:
            if stage <= 3:
                assert isinstance(block.bn1, IBN)
                planes = block.conv1.out_channels
                assert (
                    block.bn1.IN.num_features == planes // 2
                    and block.bn1.BN.num_features == planes - planes // 2
                )
            else:
                assert type(block.bn1) is nn.BatchNorm2d
            assert type(block.bn2) is nn.BatchNorm2d
    n_ibn = sum(isinstance(m, IBN) for m in model.modules())
    assert n_ibn == 6  # 2 blocks in each of layer1-3
    assert model(_images()).shape == (2, 512, 4, 2)


def test_ibn_resnet50_keys_follow_ibn_net_layout_and_run():
    backbone = ResNet(50, with_ibn=True)
    keys = set(backbone.state_dict())
    assert {
        "layer1.0.bn1.IN.weight",
        "layer1.0.bn1.BN.running_mean",
        "layer3.5.bn1.IN.bias",
    } <= keys
    assert "layer4.0.bn1.weight" in keys and not any(
        k.startswith("layer4") and ".IN." in k for k in keys
    )
    assert (
        backbone.layer1[0].bn1.IN.num_features == 32
        and backbone.layer3[0].bn1.IN.num_features == 128
    )
    assert sum(isinstance(m, IBN) for m in backbone.modules()) == 3 + 4 + 6
    assert backbone(torch.randn(2, 3, 64, 32)).shape == (2, 2048, 4, 2)


def test_squeeze_excitation_blocks():
    model = ResNet(18, with_se=True)
    blocks = [b for layer in model.stages() for b in layer]
    assert all(isinstance(b.se, SELayer) for b in blocks)
    assert blocks[-1].se.fc1.in_channels == 512
    assert model(_images()).shape == (2, 512, 4, 2)
    assert all(b.se is None for layer in ResNet(18).stages() for b in layer)


def test_non_local_placement_follows_fastreid():
    model = ResNet(34, with_nl=True)
    assert sorted(model.NL_2.keys()) == ["2", "3"] and sorted(model.NL_3.keys()) == ["3", "4", "5"]
    assert not hasattr(model, "NL_1") and not hasattr(model, "NL_4")
    assert model.NL_2["2"].g.in_channels == 128 and model.NL_3["3"].g.in_channels == 256
    assert sum(isinstance(m, NonLocalBlock) for m in ResNet(50, with_nl=True).modules()) == 5


def test_non_local_blocks_start_as_identity_and_then_act():
    model = ResNet(18, with_nl=True).eval()
    assert list(model.NL_2.keys()) == ["1"] and list(model.NL_3.keys()) == ["1"]
    plain = ResNet(18).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith(("NL_2.", "NL_3.")) for k in missing)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))
        model.NL_3["1"].W[1].weight.fill_(1.0)
        assert not torch.allclose(model(x), plain(x))


@pytest.mark.parametrize(
    "norm, kind",
    [("FrozenBN", FrozenBatchNorm), ("GN", nn.GroupNorm), ("syncBN", nn.SyncBatchNorm)],
)
def test_norm_choices(norm, kind):
    model = ResNet(18, norm=norm, with_ibn=True)
    assert isinstance(model.bn1, kind) and isinstance(model.layer4[0].bn2, kind)
    assert isinstance(model.layer1[0].bn1.BN, kind)
    assert isinstance(model.layer2[0].downsample[1], kind)
    if norm == "FrozenBN":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert [n for n, _ in model.named_parameters() if "bn" in n and ".IN." not in n] == []
    assert model(_images()).shape == (2, 512, 4, 2)


def test_depth_spellings_and_errors():
    assert parse_depth("50x") == parse_depth("50") == parse_depth(50) == 50
    assert ResNet("34x").depth == 34
    with pytest.raises(
        InvalidArgument, match=r"^depth must be one of '18x', '34x', '50x', '101x', got 152"
    ):
        ResNet(152)
    with pytest.raises(InvalidArgument, match="^last_stride must be 1 or 2, got 3"):
        ResNet(18, last_stride=3)
    with pytest.raises(InvalidArgument, match="^pretrain_path is not a file: /nowhere/w.pth"):
        ResNet(18, pretrain=True, pretrain_path="/nowhere/w.pth")
    assert "build_resnet_backbone" in BACKBONE_REGISTRY


# Config-path tests change a few keys of the defaults; ImageNet weights are not loaded.
NO_WEIGHTS = ["MODEL.BACKBONE.PRETRAIN", False]
R18 = ["MODEL.BACKBONE.DEPTH", "18x"]


def test_config_maps_the_keys():
    keys = {"DEPTH": "34x", "LAST_STRIDE": 2, "NORM": "GN", "WITH_SE": True, "WITH_NL": True}
    keys.update({"WITH_IBN": True, "FEAT_DIM": 512})
    opts = [x for k, v in keys.items() for x in (f"MODEL.BACKBONE.{k}", v)]
    model = build_backbone(load_config(None, NO_WEIGHTS + opts))
    assert type(model) is ResNet and model.depth == 34 and model.out_channels == 512
    assert model.layer4[0].conv1.stride == (2, 2) and isinstance(model.bn1, nn.GroupNorm)
    assert isinstance(model.layer1[0].bn1, IBN) and isinstance(model.layer1[0].se, SELayer)
    assert sorted(model.nl_after) == [2, 3]
    default = build_backbone(load_config(None, NO_WEIGHTS))
    assert default.depth == 50 and default.layer4[0].conv2.stride == (1, 1)
    assert not isinstance(default.layer1[0].bn1, IBN) and default.layer1[0].se is None


def test_config_errors_name_the_keys():
    with pytest.raises(
        ConfigError,
        match=r"^MODEL.BACKBONE.DEPTH must be one of '18x', '34x', '50x', '101x', got '152x'",
    ):
        build_backbone(load_config(None, NO_WEIGHTS + ["MODEL.BACKBONE.DEPTH", "152x"]))
    with pytest.raises(ConfigError, match="^MODEL.BACKBONE.LAST_STRIDE must be 1 or 2, got 3"):
        build_backbone(load_config(None, NO_WEIGHTS + ["MODEL.BACKBONE.LAST_STRIDE", 3]))
    with pytest.raises(
        ConfigError, match="^MODEL.BACKBONE.FEAT_DIM is 2048 but the backbone .* gives 512"
    ):
        build_backbone(load_config(None, NO_WEIGHTS + R18 + ["MODEL.BACKBONE.FEAT_DIM", 2048]))
    with pytest.raises(RegistryKeyError, match="MODEL.BACKBONE.NAME: .*build_resnet_backbone"):
        build_backbone(load_config(None, ["MODEL.BACKBONE.NAME", "build_resnet"]))


def test_resnet101_stage_lengths():
    with torch.device("meta"):
        model = ResNet(101)
        tv_keys = set(torchvision.models.resnet101().state_dict()) - {"fc.weight", "fc.bias"}
    assert [len(layer) for layer in model.stages()] == [3, 4, 23, 3]
    assert set(model.state_dict()) == tv_keys
