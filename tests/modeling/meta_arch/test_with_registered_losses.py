"""The networks with the framework's registered losses (the losses package's classes), end to end."""

import torch
import torch.nn.functional as F

from reid.config import get_cfg
from reid.modeling import build_model


def _cfg(arch: str, losses, **heads):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.LOSSES.NAME = losses
    for key, value in heads.items():
        cfg.MODEL.HEADS[key] = value
    return cfg


def _batch(h: int = 64):
    return {
        "images": torch.rand(8, 3, h, 32) * 255,
        "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
    }


def _backward_is_finite(model, losses) -> None:
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_baseline_with_ce_triplet_and_center_loss():
    model = build_model(_cfg("Baseline", ["CrossEntropyLoss", "TripletLoss", "CenterLoss"])).train()
    batch = _batch()
    out = model(batch)
    losses = model.losses(out, batch["targets"])
    assert set(losses) == {"loss_cls", "loss_triplet", "loss_center"}
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(out["logits"], batch["targets"]))
    centers = [p for n, p in model.named_parameters() if n.startswith("loss_set.")]
    assert [tuple(p.shape) for p in centers] == [(4, 512)]  # sized by the head's output dim
    _backward_is_finite(model, losses)


def test_ratio_head_with_nsl_and_ratio_loss():
    cfg = _cfg(
        "Baseline",
        ["CrossEntropyLoss", "RatioLoss"],
        NAME="RatioHead",
        EMBEDDING_DIM=64,
        CLS_LAYER="NSL",
        SCALE=14.0,
    )
    model = build_model(cfg).train()
    batch = _batch()
    out = model(batch)
    cosine = out["neck_features"] @ F.normalize(out["cls_weight"], dim=1).T
    torch.testing.assert_close(out["logits"], 14.0 * cosine)
    losses = model.losses(out, batch["targets"])
    assert set(losses) == {"loss_cls", "loss_ratio"}
    _backward_is_finite(model, losses)


def test_mgn_with_ce_on_heads_and_adasp_on_feature_groups():
    model = build_model(
        _cfg("MGN", ["CrossEntropyLoss", "AdaSPLoss"], EMBEDDING_DIM=32, NECK_FEAT="after")
    ).train()
    batch = _batch(96)
    out = model(batch)
    losses = model.losses(out, batch["targets"])
    heads = ["b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33"]
    groups = ["b1", "b2", "b3", "b2_parts", "b3_parts"]
    assert set(losses) == {f"loss_cls_{h}" for h in heads} | {f"loss_sp_{g}" for g in groups}
    torch.testing.assert_close(
        losses["loss_cls_b32"], F.cross_entropy(out["heads"]["b32"]["logits"], batch["targets"]) / 8
    )
    _backward_is_finite(model, losses)
    model.eval()
    assert model(batch).shape == (8, 8 * 32)
