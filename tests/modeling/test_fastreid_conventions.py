"""The conventions where reid and fastreid differ: fastreid's is the schema default, reid's is
one key away (set in reid's Base files). Each key against an independent reference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reid.config import ConfigError, load_config
from reid.modeling import build_model
from reid.modeling.backbones import ResNet
from reid.modeling.layers.classifiers import Linear
from reid.modeling.layers.non_local import NonLocalBlock

CPU = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False"]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_stem_pool_ceil_is_fastreids_and_padded_torchvisions():
    x = torch.randn(2, 64, 64, 32)
    ceil = ResNet(18, stem_pool="ceil").maxpool
    padded = ResNet(18, stem_pool="padded").maxpool
    torch.testing.assert_close(ceil(x), F.max_pool2d(x, 3, 2, padding=0, ceil_mode=True))
    torch.testing.assert_close(padded(x), F.max_pool2d(x, 3, 2, padding=1))
    assert ceil(x).shape == padded(x).shape == (2, 64, 32, 16)  # same size, other windows
    assert not torch.equal(ceil(x), padded(x))
    with pytest.raises(ConfigError, match=r"^MODEL.BACKBONE.STEM_POOL must be one of"):
        build_model(load_config(None, CPU + ["MODEL.BACKBONE.STEM_POOL", "same"]))


def test_agw_has_fastreids_25_1_m_parameters_and_reids_c_over_2_is_one_key_away():
    agw = CPU + [
        "MODEL.BACKBONE.WITH_NL", "True", "MODEL.HEADS.POOL_LAYER", "GeneralizedMeanPooling",
        "MODEL.HEADS.NUM_CLASSES", "751", "MODEL.HEADS.WITH_BNNECK", "True",
    ]  # fmt: skip
    assert _params(build_model(load_config(None, agw))) == 25_078_863
    half = agw + ["MODEL.BACKBONE.NL_INTER_CHANNELS", "0"]
    assert _params(build_model(load_config(None, half))) == 32_408_640


def test_non_local_inner_channels():
    assert NonLocalBlock(512, inter_channels=1).g.out_channels == 1
    assert NonLocalBlock(512).theta.out_channels == 256
    model = ResNet(50, with_nl=True, nl_inter_channels=1)
    assert {m.phi.out_channels for m in model.modules() if isinstance(m, NonLocalBlock)} == {1}
    with pytest.raises(ValueError, match="nl_inter_channels must be >= 0"):
        ResNet(50, with_nl=True, nl_inter_channels=-1)


def _default_conv_init_std(conv: nn.Conv2d) -> float:
    """std of PyTorch's default kaiming_uniform(a=sqrt(5)) init: 1 / sqrt(3 fan_in)."""
    return 1.0 / (3 * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]) ** 0.5


@pytest.mark.parametrize("init", ["pytorch", "kaiming"])
def test_non_local_convs_keep_pytorchs_init_or_take_the_backbones(init):
    torch.manual_seed(0)
    model = ResNet(50, with_nl=True, nl_inter_channels=0, nl_init=init)
    theta = model.NL_3["5"].theta  # 1024 -> 512
    std = float(theta.weight.std())
    if init == "pytorch":
        assert std == pytest.approx(_default_conv_init_std(theta), rel=0.05)
    else:  # Kaiming normal, fan-out: sqrt(2 / out_channels)
        assert std == pytest.approx((2.0 / 512) ** 0.5, rel=0.05)
    assert torch.count_nonzero(model.NL_3["5"].W[1].weight) == 0  # the block starts as identity


@pytest.mark.parametrize("std", [0.01, 0.001])
def test_linear_classifier_init_std(std):
    torch.manual_seed(0)
    layer = Linear(512, 2000, init_std=std)
    assert float(layer.weight.std()) == pytest.approx(std, rel=0.01)
    cfg = load_config(None, CPU + ["MODEL.HEADS.NUM_CLASSES", "2000"])
    model = build_model(cfg)
    assert float(model.heads.classifier.weight.std()) == pytest.approx(0.01, rel=0.01)


def test_reid_base_files_keep_reids_conventions():
    cfg = load_config("configs/Base-bagtricks.yml", CPU)
    assert cfg.MODEL.BACKBONE.STEM_POOL == "padded" and cfg.MODEL.BACKBONE.NL_INTER_CHANNELS == 0
    assert cfg.MODEL.BACKBONE.NL_INIT == "kaiming" and cfg.MODEL.HEADS.LINEAR_INIT_STD == 0.001
    assert cfg.MODEL.LOSSES.CE.SMOOTH_OVER == "all"
    assert cfg.MODEL.LOSSES.TRI.ANCHOR_AS_POSITIVE is False
    # the AdaSP rows follow the AdaSP repository, i.e. fastreid's torch.chunk stripes
    assert load_config("configs/papers/adasp/Base-MGN.yml", CPU).MODEL.MGN.STRIPES == "chunk"
    fastreid = load_config(None, CPU)  # the schema: fastreid's
    assert (fastreid.MODEL.BACKBONE.STEM_POOL, fastreid.MODEL.BACKBONE.NL_INTER_CHANNELS) == (
        "ceil",
        1,
    )
    assert (
        fastreid.MODEL.BACKBONE.NL_INIT == "pytorch"
        and fastreid.MODEL.HEADS.LINEAR_INIT_STD == 0.01
    )
    assert fastreid.MODEL.LOSSES.CE.SMOOTH_OVER == "others"
    assert fastreid.MODEL.LOSSES.TRI.ANCHOR_AS_POSITIVE is True
    assert fastreid.MODEL.MGN.STRIPES == "chunk"


@pytest.mark.parametrize("stripes,rows", [("chunk", [4, 4, 2]), ("balanced", [4, 3, 3])])
def test_mgn_stripes(stripes, rows):
    cfg = load_config(
        None,
        CPU + ["MODEL.META_ARCHITECTURE", "MGN", "MODEL.BACKBONE.DEPTH", "18x",
               "MODEL.BACKBONE.FEAT_DIM", "0",
               "MODEL.HEADS.NUM_CLASSES", "3", "MODEL.MGN.STRIPES", stripes],
    )  # fmt: skip
    model = build_model(cfg).eval()
    maps = model._feature_maps(torch.zeros(1, 3, 160, 64))  # part maps of height 10
    assert [maps[n].shape[2] for n in ("b31", "b32", "b33")] == rows
    assert [maps[n].shape[2] for n in ("b21", "b22")] == [5, 5]
    if stripes == "chunk":  # height 4: torch.chunk gives 2 stripes of 2 rows, not 3
        with pytest.raises(ValueError, match=r"into 3 stripes \(chunk\), which leaves a stripe"):
            model._feature_maps(torch.zeros(1, 3, 64, 32))
