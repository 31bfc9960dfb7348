import pytest
import torch
import torch.nn.functional as F

from reid.config import ConfigError, InvalidArgument, load_config
from reid.modeling import build_model, resolve_device
from reid.modeling.backbones import ResNet
from reid.modeling.heads import EmbeddingHead, RatioHead, UnifiedHead
from reid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline
from reid.utils.registry import RegistryKeyError

N_CLASSES = 4


def _batch(n: int = 4, h: int = 64, w: int = 32):
    return {
        "images": torch.rand(n, 3, h, w) * 255,
        "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3][:n]),
    }


def _resnet18_baseline(loss_set, head=None, **kwargs) -> Baseline:
    head = EmbeddingHead(512, N_CLASSES) if head is None else head
    return Baseline(ResNet(18), head, loss_set, **kwargs)


def test_pixel_normalisation_inside_the_model(test_loss_set):
    model = _resnet18_baseline(
        test_loss_set(), pixel_mean=[100.0, 110.0, 120.0], pixel_std=[50.0, 60.0, 70.0]
    )
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    batch = _batch()
    model.eval()
    model(batch)
    expected = (
        batch["images"] - torch.tensor([100.0, 110.0, 120.0]).view(1, 3, 1, 1)
    ) / torch.tensor([50.0, 60.0, 70.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], expected)
    assert "pixel_mean" not in model.state_dict() and model.pixel_std.shape == (1, 3, 1, 1)
    uint8 = {"images": batch["images"].to(torch.uint8)}
    model(uint8)
    torch.testing.assert_close(
        seen[1], (uint8["images"].float() - model.pixel_mean) / model.pixel_std
    )


def test_train_outputs_and_losses(test_loss_set):
    model = _resnet18_baseline(test_loss_set(feat=0.5))
    assert model.device == torch.device("cpu")
    model.train()
    batch = _batch()
    out = model(batch)
    assert set(out) == {"features", "neck_features", "logits", "cls_weight"}
    assert out["features"].shape == (4, 512) and out["logits"].shape == (4, N_CLASSES)
    losses = model.losses(out, batch["targets"])
    torch.testing.assert_close(
        losses["loss_test_cls"], F.cross_entropy(out["logits"], batch["targets"])
    )
    torch.testing.assert_close(losses["loss_test_feat"], 0.5 * out["features"].pow(2).mean())
    assert set(model.losses(out, batch["targets"], weights={"TestLogitsCE": 2.0})) == {
        "loss_test_cls"
    }
    sum(losses.values()).backward()
    assert (
        model.backbone.conv1.weight.grad is not None
        and model.heads.classifier.weight.grad is not None
    )
    assert list(model.loss_set.losses) == ["TestLogitsCE", "TestFeatureEnergy"]


@pytest.mark.parametrize("neck_feat", ["before", "after"])
def test_test_feature_of_the_embedding_head(test_loss_set, neck_feat):
    model = _resnet18_baseline(test_loss_set(), EmbeddingHead(512, N_CLASSES, neck_feat=neck_feat))
    model.train()
    model(_batch())  # running statistics of the BN neck move away from 0 / 1
    model.eval()
    batch = _batch()
    feat = model(batch)
    with torch.no_grad():
        fmap = model.backbone(model.preprocess_image(batch))
        pooled = fmap.mean(dim=(2, 3))
        bn = model.heads.bottleneck
        after = (pooled - bn.running_mean) / torch.sqrt(
            bn.running_var + bn.eps
        ) * bn.weight + bn.bias
    assert feat.shape == (4, 512)
    torch.testing.assert_close(
        feat, after
    )  # the neck's output whatever NECK_FEAT picks for the losses


def test_test_feature_of_the_paper_heads(test_loss_set):
    ratio = _resnet18_baseline(test_loss_set(), RatioHead(512, N_CLASSES, embedding_dim=32))
    feat = ratio.eval()(_batch())
    assert feat.shape == (4, 32)
    torch.testing.assert_close(feat.norm(dim=1), torch.ones(4))
    unified = _resnet18_baseline(test_loss_set(), UnifiedHead(512, N_CLASSES)).eval()
    assert unified(_batch()).shape == (4, 1024)


def test_input_errors(test_loss_set):
    model = _resnet18_baseline(test_loss_set())
    model.train()
    with pytest.raises(ValueError, match=r"training mode needs batch\['targets'\]"):
        model({"images": torch.rand(2, 3, 64, 32)})
    with pytest.raises(ValueError, match=r"B x 3 x H x W .* got \(3, 64, 32\)"):
        model({"images": torch.rand(3, 64, 32), "targets": torch.tensor([0])})
    with pytest.raises(InvalidArgument, match=r"^pixel_std must have 3 values, all positive"):
        _resnet18_baseline(test_loss_set(), pixel_std=[1.0, 0.0, 1.0])
    with pytest.raises(InvalidArgument, match=r"^pixel_mean must have 3 values, got \[1.0\]"):
        _resnet18_baseline(test_loss_set(), pixel_mean=[1.0])
    assert {"Baseline", "MGN"} <= set(META_ARCH_REGISTRY.names())


# The config-path tests: a ResNet-18 from scratch with CE + triplet, a few keys changed.
SMALL = [
    "MODEL.DEVICE", "cpu",
    "MODEL.BACKBONE.DEPTH", "18x",
    "MODEL.BACKBONE.FEAT_DIM", 512,
    "MODEL.BACKBONE.PRETRAIN", False,
    "MODEL.HEADS.NUM_CLASSES", N_CLASSES,
    "MODEL.LOSSES.NAME", ["CrossEntropyLoss", "TripletLoss"],
]  # fmt: skip


def test_config_builds_backbone_head_and_losses_from_their_keys():
    opts = ["MODEL.HEADS.EMBEDDING_DIM", 64, "MODEL.LOSSES.TRI.SCALE", 0.5]
    opts += ["MODEL.PIXEL_MEAN", [100.0, 110.0, 120.0], "MODEL.PIXEL_STD", [50.0, 60.0, 70.0]]
    model = build_model(load_config(None, SMALL + opts))
    assert type(model) is Baseline and model.device == torch.device("cpu")
    assert type(model.backbone) is ResNet and model.backbone.depth == 18
    assert type(model.heads) is EmbeddingHead and model.heads.out_dim == 64
    assert model.heads.classifier.weight.shape == (N_CLASSES, 64)
    assert list(model.loss_set.losses) == ["CrossEntropyLoss", "TripletLoss"]
    assert model.loss_set.weights == {"CrossEntropyLoss": 1.0, "TripletLoss": 0.5}
    assert model.pixel_mean.flatten().tolist() == [100.0, 110.0, 120.0]
    assert model.pixel_std.flatten().tolist() == [50.0, 60.0, 70.0]


def test_feat_dim_is_checked_against_the_backbone():
    cfg = load_config(None, SMALL + ["MODEL.BACKBONE.FEAT_DIM", 512])
    assert build_model(cfg).heads.classifier.weight.shape == (N_CLASSES, 512)
    with pytest.raises(ValueError, match="FEAT_DIM is 2048 but the backbone .* gives 512 channels"):
        build_model(load_config(None, SMALL + ["MODEL.BACKBONE.FEAT_DIM", 2048]))


def test_config_errors_name_the_keys():
    with pytest.raises(RegistryKeyError, match="MODEL.META_ARCHITECTURE: .*Baseline, MGN"):
        build_model(load_config(None, SMALL + ["MODEL.META_ARCHITECTURE", "Bagtricks"]))
    with pytest.raises(ConfigError, match="^MODEL.PIXEL_STD must have 3 values"):
        build_model(load_config(None, SMALL + ["MODEL.PIXEL_STD", [1.0, 0.0, 1.0]]))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="MODEL.DEVICE: 'gpu0' is not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(
            RuntimeError, match="MODEL.DEVICE is 'cuda:0' but CUDA is not available"
        ):
            resolve_device("cuda:0")
