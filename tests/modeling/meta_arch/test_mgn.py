import pytest
import torch
import torch.nn.functional as F
import torchvision

from reid.config import ConfigError, InvalidArgument, load_config
from reid.modeling import build_model
from reid.modeling.backbones import ResNet
from reid.modeling.heads import EmbeddingHead
from reid.modeling.meta_arch import MGN

EMB, N_CLASSES = 16, 4
HEADS = ["b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33"]
GROUPS = ["b1", "b2", "b3", "b2_parts", "b3_parts"]


def _mgn(loss_set, parts=(2, 3), resnet=None, **kwargs) -> MGN:
    """A ResNet-18 MGN with EMB-d embedding heads; the test CE on the heads."""
    resnet = ResNet(18, last_stride=2) if resnet is None else resnet
    heads = {
        name: EmbeddingHead(512, N_CLASSES, embedding_dim=EMB) for name in MGN.head_names_for(parts)
    }
    kwargs.setdefault("head_losses", ["TestLogitsCE"])
    return MGN(resnet, heads, loss_set, parts=parts, **kwargs)


def _batch(h: int = 96, w: int = 32):
    return {"images": torch.rand(4, 3, h, w) * 255, "targets": torch.tensor([0, 0, 1, 1])}


def test_structure_branches_and_strides(test_loss_set):
    model = _mgn(test_loss_set())
    assert model.head_names == HEADS and model.group_names == GROUPS
    assert list(model.heads.keys()) == HEADS
    # shared trunk ends with the first block of layer3; each branch owns the rest of layer3 and a
    # layer4
    assert model.backbone[-1].conv1.stride == (2, 2) and len(model.b1[0]) == 1
    assert model.b1[1][0].conv1.stride == (2, 2)  # global branch: LAST_STRIDE
    for branch in (model.b2, model.b3):
        assert branch[1][0].conv1.stride == (1, 1) and branch[1][0].downsample[0].stride == (1, 1)
    shared = model.backbone(torch.rand(1, 3, 96, 32))
    assert shared.shape == (1, 256, 6, 2)
    assert model.b1(shared).shape == (1, 512, 3, 1) and model.b2(shared).shape == (1, 512, 6, 2)
    assert model.b1[1][0].conv1.weight.data_ptr() != model.b2[1][0].conv1.weight.data_ptr()
    assert model.b2[0][0].conv1.weight.data_ptr() != model.b3[0][0].conv1.weight.data_ptr()


def test_branches_start_from_the_pretrained_layers(tmp_path, test_loss_set):
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    resnet = ResNet(18, last_stride=2, pretrain=True, pretrain_path=str(path))
    model = _mgn(test_loss_set(), resnet=resnet)
    for branch in (model.b1, model.b2, model.b3):
        torch.testing.assert_close(branch[0][0].conv2.weight, state["layer3.1.conv2.weight"])
        torch.testing.assert_close(
            branch[1][0].downsample[0].weight, state["layer4.0.downsample.0.weight"]
        )
    torch.testing.assert_close(model.backbone[6].conv1.weight, state["layer3.0.conv1.weight"])


def test_test_feature_is_the_concatenation_of_the_heads_in_fastreid_order(test_loss_set):
    model = _mgn(test_loss_set()).eval()
    batch = _batch()
    feat = model(batch)
    assert feat.shape == (4, 8 * EMB)
    with torch.no_grad():
        shared = model.backbone(model.preprocess_image(batch))
        g1, g2, g3 = model.b1(shared), model.b2(shared), model.b3(shared)
        assert g2.shape[2] == 6
        maps = {
            "b1": g1,
            "b2": g2,
            "b3": g3,
            "b21": g2[:, :, :3],
            "b22": g2[:, :, 3:],
            "b31": g3[:, :, :2],
            "b32": g3[:, :, 2:4],
            "b33": g3[:, :, 4:],
        }
        expected = torch.cat([model.heads[name](maps[name]) for name in HEADS], dim=1)
    torch.testing.assert_close(feat, expected)


def test_training_outputs_and_fastreid_loss_weights(test_loss_set):
    model = _mgn(test_loss_set()).train()
    batch = _batch()
    out = model(batch)
    assert list(out["heads"]) == HEADS and list(out["groups"]) == GROUPS
    assert out["features"].shape == (4, 8 * EMB) and out["logits"] is out["heads"]["b1"]["logits"]
    torch.testing.assert_close(
        out["groups"]["b3_parts"]["features"],
        torch.cat([out["heads"][n]["features"] for n in ("b31", "b32", "b33")], dim=1),
    )
    assert out["groups"]["b2"] is out["heads"]["b2"]
    targets = batch["targets"]
    losses = model.losses(out, targets)
    assert set(losses) == {f"loss_test_cls_{h}" for h in HEADS} | {
        f"loss_test_feat_{g}" for g in GROUPS
    }
    for name in HEADS:
        torch.testing.assert_close(
            losses[f"loss_test_cls_{name}"],
            F.cross_entropy(out["heads"][name]["logits"], targets) / 8,
        )
    for name in GROUPS:
        torch.testing.assert_close(
            losses[f"loss_test_feat_{name}"], out["groups"][name]["features"].pow(2).mean() / 5
        )
    sum(losses.values()).backward()
    grads = [
        model.backbone[0].weight.grad,
        model.b3[1][0].conv1.weight.grad,
        model.heads["b33"].classifier.weight.grad,
    ]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_configurable_weights_parts_and_stage_weights(test_loss_set):
    model = _mgn(
        test_loss_set(ce=3.0),
        parts=[2],
        head_weights=[1.0, 0.0, 0.5, 0.5],
        group_weights=[2.0, 0.0, 1.0],
    ).train()
    assert model.head_names == ["b1", "b2", "b21", "b22"] and model.group_names == [
        "b1",
        "b2",
        "b2_parts",
    ]
    batch = _batch(64, 32)
    out = model(batch)
    losses = model.losses(out, batch["targets"])
    assert (
        "loss_test_cls_b2" not in losses and "loss_test_feat_b2" not in losses
    )  # weight 0: not computed
    ce = F.cross_entropy(out["heads"]["b21"]["logits"], batch["targets"])
    torch.testing.assert_close(losses["loss_test_cls_b21"], 3.0 * 0.5 * ce)
    torch.testing.assert_close(
        losses["loss_test_feat_b1"], 2.0 * out["heads"]["b1"]["features"].pow(2).mean()
    )
    only_feat = model.losses(out, batch["targets"], weights={"TestFeatureEnergy": 1.0})
    assert set(only_feat) == {"loss_test_feat_b1", "loss_test_feat_b2_parts"}
    assert model(batch)["features"].shape == (4, 4 * EMB)


def test_mgn_errors(test_loss_set):
    with pytest.raises(InvalidArgument, match="^head_weights must list 8 weights"):
        _mgn(test_loss_set(), head_weights=[1.0])
    with pytest.raises(InvalidArgument, match="^parts must list the stripe count"):
        _mgn(test_loss_set(), parts=[1, 3])
    with pytest.raises(InvalidArgument, match="^head_losses names 'TestLogitCE'.*TestLogitsCE"):
        _mgn(test_loss_set(), head_losses=["TestLogitCE"])
    with pytest.raises(InvalidArgument, match="^backbone has non-local blocks.*WITH_NL"):
        _mgn(test_loss_set(), resnet=ResNet(18, with_nl=True))
    with pytest.raises(TypeError, match="MGN needs a ResNet backbone"):
        _mgn(test_loss_set(), resnet=torch.nn.Conv2d(3, 512, 1))
    with pytest.raises(InvalidArgument, match=r"^heads must map each of \['b1', 'b2', 'b21'"):
        MGN(ResNet(18), {"b1": EmbeddingHead(512, N_CLASSES)}, test_loss_set(), parts=[2])
    model = _mgn(test_loss_set()).eval()
    with pytest.raises(ValueError, match="height 2 into 3 stripes"):
        model(_batch(32, 32))
    misplaced = _mgn(test_loss_set(), head_losses=[]).train()
    batch = _batch()
    with pytest.raises(
        KeyError, match="MGN feature group 'b2_parts' lacks an output .* MODEL.MGN.HEAD_LOSSES"
    ):
        misplaced.losses(misplaced(batch), batch["targets"], weights={"TestLogitsCE": 1.0})


# The config-path tests: a ResNet-18 MGN from scratch with CE on the heads and triplet on the
# feature groups, a few keys changed.
SMALL_MGN = [
    "MODEL.DEVICE", "cpu",
    "MODEL.META_ARCHITECTURE", "MGN",
    "MODEL.BACKBONE.DEPTH", "18x",
    "MODEL.BACKBONE.FEAT_DIM", 512,
    "MODEL.BACKBONE.PRETRAIN", False,
    "MODEL.BACKBONE.LAST_STRIDE", 2,
    "MODEL.HEADS.EMBEDDING_DIM", EMB,
    "MODEL.HEADS.NUM_CLASSES", N_CLASSES,
    "MODEL.LOSSES.NAME", ["CrossEntropyLoss", "TripletLoss"],
]  # fmt: skip


def test_config_maps_the_mgn_keys():
    opts = ["MODEL.MGN.PARTS", [2], "MODEL.MGN.HEAD_WEIGHTS", [1.0, 0.0, 0.5, 0.5]]
    opts += ["MODEL.MGN.GROUP_WEIGHTS", [2.0, 0.0, 1.0], "MODEL.LOSSES.CE.SCALE", 3.0]
    model = build_model(load_config(None, SMALL_MGN + opts))
    assert type(model) is MGN and model.head_names == ["b1", "b2", "b21", "b22"]
    assert model.head_weights == [1.0, 0.0, 0.5, 0.5] and model.group_weights == [2.0, 0.0, 1.0]
    assert model.head_losses == {"CrossEntropyLoss"}
    assert model.loss_set.weights == {"CrossEntropyLoss": 3.0, "TripletLoss": 1.0}
    assert model.b1[1][0].conv1.stride == (2, 2) and model.b2[1][0].conv1.stride == (1, 1)
    assert all(model.heads[n].out_dim == EMB for n in model.head_names)
    model.train()
    batch = _batch()
    losses = model.losses(model(batch), batch["targets"])
    assert set(losses) == {"loss_cls_b1", "loss_cls_b21", "loss_cls_b22"} | {
        "loss_triplet_b1",
        "loss_triplet_b2_parts",
    }


def test_config_errors_name_the_keys():
    with pytest.raises(ConfigError, match="^MODEL.MGN.HEAD_WEIGHTS must list 8 weights"):
        build_model(load_config(None, SMALL_MGN + ["MODEL.MGN.HEAD_WEIGHTS", [1.0]]))
    with pytest.raises(ConfigError, match="^MODEL.MGN.PARTS must list the stripe count"):
        build_model(load_config(None, SMALL_MGN + ["MODEL.MGN.PARTS", [1, 3]]))
    with pytest.raises(ConfigError, match="^MODEL.MGN.HEAD_LOSSES names 'CELoss'"):
        build_model(load_config(None, SMALL_MGN + ["MODEL.MGN.HEAD_LOSSES", ["CELoss"]]))
    with pytest.raises(ValueError, match="WITH_NL"):
        build_model(load_config(None, SMALL_MGN + ["MODEL.BACKBONE.WITH_NL", True]))
