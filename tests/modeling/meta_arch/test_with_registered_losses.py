"""The networks built from configs with the framework's registered losses, end to end."""

import torch
import torch.nn.functional as F

from reid.config import load_config
from reid.modeling import build_model

# A ResNet-18 from scratch on CPU for 4 identities; each test adds its architecture and losses.
SMALL = [
    "MODEL.DEVICE", "cpu",
    "MODEL.BACKBONE.DEPTH", "18x",
    "MODEL.BACKBONE.FEAT_DIM", 512,
    "MODEL.BACKBONE.PRETRAIN", False,
    "MODEL.HEADS.NUM_CLASSES", 4,
]  # fmt: skip


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
    losses = ["CrossEntropyLoss", "TripletLoss", "CenterLoss"]
    model = build_model(load_config(None, SMALL + ["MODEL.LOSSES.NAME", losses])).train()
    batch = _batch()
    out = model(batch)
    losses = model.losses(out, batch["targets"])
    assert set(losses) == {"loss_cls", "loss_triplet", "loss_center"}
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(out["logits"], batch["targets"]))
    centers = [p for n, p in model.named_parameters() if n.startswith("loss_set.")]
    assert [tuple(p.shape) for p in centers] == [(4, 512)]  # sized by the head's output dim
    _backward_is_finite(model, losses)


def test_ratio_head_with_nsl_and_ratio_loss():
    opts = ["MODEL.LOSSES.NAME", ["CrossEntropyLoss", "RatioLoss"], "MODEL.HEADS.NAME", "RatioHead"]
    opts += ["MODEL.HEADS.EMBEDDING_DIM", 64, "MODEL.HEADS.CLS_LAYER", "NSL"]
    cfg = load_config(None, SMALL + opts + ["MODEL.HEADS.SCALE", 14.0])
    model = build_model(cfg).train()
    batch = _batch()
    out = model(batch)
    cosine = out["neck_features"] @ F.normalize(out["cls_weight"], dim=1).T
    torch.testing.assert_close(out["logits"], 14.0 * cosine)
    losses = model.losses(out, batch["targets"])
    assert set(losses) == {"loss_cls", "loss_ratio"}
    _backward_is_finite(model, losses)


def test_mgn_with_ce_on_heads_and_adasp_on_feature_groups():
    opts = [
        "MODEL.META_ARCHITECTURE",
        "MGN",
        "MODEL.LOSSES.NAME",
        ["CrossEntropyLoss", "AdaSPLoss"],
    ]
    opts += ["MODEL.HEADS.EMBEDDING_DIM", 32, "MODEL.HEADS.NECK_FEAT", "after"]
    model = build_model(load_config(None, SMALL + opts)).train()
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
