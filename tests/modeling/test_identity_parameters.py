"""Every per-identity tensor of reid's models declares itself (``identity_parameters``), so that
weights of another identity set re-initialise exactly those tensors and nothing else."""

import pytest
import torch

from reid.config import load_config
from reid.modeling import build_model
from reid.modeling.losses import LOSS_REGISTRY
from reid.utils.checkpoint import identity_keys, load_state_strict

NUM_CLASSES = 37  # no other dimension of these models has 37 rows

BASE = [
    "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.PRETRAIN", "False",
    "MODEL.BACKBONE.FEAT_DIM", "0", "MODEL.HEADS.NUM_CLASSES", str(NUM_CLASSES),
]  # fmt: skip
# Every registered loss but the sparse pair-wise pair (one SP block for two names).
ALL_LOSSES = sorted(set(LOSS_REGISTRY.names()) - {"AdaSPLoss"})
MODELS = {
    "EmbeddingHead": [],
    "EmbeddingHead-CosFace": ["MODEL.HEADS.CLS_LAYER", "CosFace", "MODEL.HEADS.SCALE", "30.0"],
    "RatioHead": ["MODEL.HEADS.NAME", "RatioHead", "MODEL.HEADS.CLS_LAYER", "NSL"],
    "UnifiedHead": ["MODEL.HEADS.NAME", "UnifiedHead"],
    "MGN": ["MODEL.META_ARCHITECTURE", "MGN", "MODEL.HEADS.EMBEDDING_DIM", "64"],
}


def _per_identity_rows(model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if v.dim() >= 1 and v.shape[0] == NUM_CLASSES}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_tensor_with_a_row_per_identity_is_declared(name):
    losses = ALL_LOSSES if name != "MGN" else ["CrossEntropyLoss", "CenterLoss", "ProxyNCALoss"]
    opts = BASE + MODELS[name] + ["MODEL.LOSSES.NAME", repr(losses)]
    if name == "MGN":
        opts += ["MODEL.MGN.HEAD_LOSSES", repr(losses)]
    model = build_model(load_config(None, opts))
    declared = identity_keys(model)
    assert declared == _per_identity_rows(model)
    assert {k for k in declared if "classifier" in k}  # the heads' classifiers are among them
    if name != "MGN":
        assert "loss_set.losses.CenterLoss.centers" in declared
        assert "loss_set.losses.ProxyNCALoss.proxies" in declared
    else:
        assert len([k for k in declared if k.endswith("classifier.weight")]) == 8


def test_weights_of_another_identity_set_reinitialise_only_those():
    opts = BASE + ["MODEL.LOSSES.NAME", "['CrossEntropyLoss', 'CenterLoss', 'ProxyNCALoss']"]
    source = build_model(load_config(None, opts)).state_dict()
    other = opts + ["MODEL.HEADS.NUM_CLASSES", "5"]
    model = build_model(load_config(None, other))
    report = load_state_strict(model, source, source="150-identity run")
    assert sorted(report.reinitialised) == sorted(identity_keys(model))
    assert len(report.reinitialised) == 3 and not report.missing
