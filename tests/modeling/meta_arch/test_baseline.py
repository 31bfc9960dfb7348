import pytest
import torch
import torch.nn.functional as F

from reid.config import get_cfg
from reid.modeling import build_model, resolve_device
from reid.modeling.meta_arch import META_ARCH_REGISTRY, Baseline
from reid.utils.registry import RegistryKeyError

N_CLASSES = 4


def _cfg(losses, **model):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = N_CLASSES
    cfg.MODEL.LOSSES.NAME = losses
    for key, value in model.items():
        node, leaf = cfg.MODEL, key
        while "." in leaf:
            head, leaf = leaf.split(".", 1)
            node = node[head]
        node[leaf] = value
    return cfg


def _batch(n: int = 4, h: int = 64, w: int = 32):
    return {
        "images": torch.rand(n, 3, h, w) * 255,
        "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3][:n]),
    }


def test_pixel_normalisation_inside_the_model(test_losses):
    cfg = _cfg(test_losses)
    cfg.MODEL.PIXEL_MEAN = [100.0, 110.0, 120.0]
    cfg.MODEL.PIXEL_STD = [50.0, 60.0, 70.0]
    model = build_model(cfg)
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


def test_train_outputs_and_losses(test_losses):
    model = build_model(_cfg(test_losses, **{"LOSSES.TRI.SCALE": 0.5}))
    assert isinstance(model, Baseline) and model.device == torch.device("cpu")
    model.train()
    batch = _batch()
    out = model(batch)
    assert {"features", "neck_features", "logits", "pred_logits", "cls_weight"} <= set(out)
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
    assert list(model.loss_set.losses) == test_losses


@pytest.mark.parametrize("neck_feat", ["before", "after"])
def test_test_feature_of_the_embedding_head(test_losses, neck_feat):
    model = build_model(_cfg(test_losses, **{"HEADS.NECK_FEAT": neck_feat}))
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


def test_test_feature_of_the_paper_heads(test_losses):
    ratio = build_model(
        _cfg(test_losses, **{"HEADS.NAME": "RatioHead", "HEADS.EMBEDDING_DIM": 32})
    ).eval()
    feat = ratio(_batch())
    assert feat.shape == (4, 32)
    torch.testing.assert_close(feat.norm(dim=1), torch.ones(4))
    unified = build_model(_cfg(test_losses, **{"HEADS.NAME": "UnifiedHead"})).eval()
    assert unified(_batch()).shape == (4, 1024)


def test_feat_dim_is_checked_against_the_backbone(test_losses):
    assert build_model(
        _cfg(test_losses, **{"BACKBONE.FEAT_DIM": 512})
    ).heads.classifier.weight.shape == (N_CLASSES, 512)
    with pytest.raises(ValueError, match="FEAT_DIM is 2048 but the backbone .* gives 512 channels"):
        build_model(_cfg(test_losses, **{"BACKBONE.FEAT_DIM": 2048}))


def test_input_errors(test_losses):
    model = build_model(_cfg(test_losses))
    model.train()
    with pytest.raises(ValueError, match=r"training mode needs batch\['targets'\]"):
        model({"images": torch.rand(2, 3, 64, 32)})
    with pytest.raises(ValueError, match=r"B x 3 x H x W .* got \(3, 64, 32\)"):
        model({"images": torch.rand(3, 64, 32), "targets": torch.tensor([0])})
    with pytest.raises(RegistryKeyError, match="Baseline, MGN"):
        build_model(_cfg(test_losses, META_ARCHITECTURE="Bagtricks"))
    with pytest.raises(ValueError, match="PIXEL_STD must have 3 values"):
        build_model(_cfg(test_losses, PIXEL_STD=[1.0, 0.0, 1.0]))
    assert {"Baseline", "MGN"} <= set(META_ARCH_REGISTRY.names())


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
