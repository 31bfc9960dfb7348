"""Recognising a fastreid checkpoint and renaming its keys (no fastreid needed: its key layout is
written out here; tests/compat checks the real thing against fastreid 1.4.0)."""

import pytest
import torch

from reid.config import load_config
from reid.modeling import build_model
from reid.utils.checkpoint import (
    WeightsMismatchError,
    checkpoint_num_classes,
    is_fastreid_checkpoint,
    load_model_weights,
)
from reid.utils.fastreid_checkpoint import convert_fastreid_state, is_fastreid_state

CPU = [
    "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.DEPTH", "18x",
    "MODEL.BACKBONE.FEAT_DIM", "0",
]  # fmt: skip


def _model(*opts: str, classes: int = 5) -> torch.nn.Module:
    return build_model(load_config(None, [*CPU, "MODEL.HEADS.NUM_CLASSES", str(classes), *opts]))


def _as_fastreid(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A reid model's state in fastreid's layout (the inverse renaming, written out)."""
    state = model.state_dict()
    reduction = "heads.reduction.weight" in state
    positions: dict[str, list[int]] = {}
    for key in state:
        if key.startswith("backbone.NL_"):
            stage, position = key.split(".")[1:3]
            positions.setdefault(stage, []).append(int(position))
    out = {}
    for key, value in state.items():
        if key == "heads.classifier.weight":
            key = "heads.weight"
        elif key.startswith("heads.reduction."):
            key = "heads.bottleneck.0." + key[len("heads.reduction.") :]
        elif key.startswith("heads.bottleneck."):
            key = f"heads.bottleneck.{int(reduction)}." + key[len("heads.bottleneck.") :]
        elif key.startswith("backbone.NL_"):
            _, stage, position, rest = key.split(".", 3)
            index = sorted(set(positions[stage])).index(int(position))
            key = f"backbone.{stage}.{index}.{rest}"
        out[key] = value.clone()
    return out


def test_recognised_by_its_head_keys_and_not_a_reid_checkpoint():
    assert is_fastreid_state({"module.heads.weight": torch.zeros(3, 2)})
    assert is_fastreid_state({"b1_head.weight": torch.zeros(3, 2)})
    assert not is_fastreid_state({"heads.classifier.weight": torch.zeros(3, 2)})
    reid_v2 = {"model": {"heads.weight": torch.zeros(3, 2)}, "checkpoint_version": 2}
    assert not is_fastreid_checkpoint(reid_v2)
    fastreid = {"model": {"heads.weight": torch.zeros(9, 2)}, "iteration": 100}
    assert is_fastreid_checkpoint(fastreid) and checkpoint_num_classes(fastreid) == 9
    assert checkpoint_num_classes({"model": {}, "num_classes": 4}) == 4


def test_non_local_blocks_are_renumbered_by_the_blocks_they_follow():
    model = _model("MODEL.BACKBONE.WITH_NL", "True")
    own = {k: v.shape for k, v in model.state_dict().items()}
    state = {"backbone.NL_3.0.g.weight": torch.zeros(1), "backbone.NL_3.2.g.weight": torch.ones(1)}
    converted, _ = convert_fastreid_state(state, own)
    # ResNet-18: one non-local block after the last block (1) of layer2 and of layer3.
    assert sorted(converted) == ["backbone.NL_3.1.g.weight", "backbone.NL_3.2.g.weight"]


def test_a_fastreid_state_loads_and_gives_the_same_model():
    source = _model("MODEL.BACKBONE.WITH_NL", "True", "MODEL.HEADS.EMBEDDING_DIM", "16")
    target = _model("MODEL.BACKBONE.WITH_NL", "True", "MODEL.HEADS.EMBEDDING_DIM", "16")
    report = load_model_weights(target, {"model": _as_fastreid(source)}, source="zoo.pth")
    assert report.source == "zoo.pth (fastreid checkpoint, keys renamed)" and not report.missing
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_squeeze_excitation_linear_layers_become_convolutions_with_zero_bias():
    model = _model("MODEL.BACKBONE.WITH_SE", "True")
    own = {k: v.shape for k, v in model.state_dict().items()}
    weight = torch.randn(4, 64)
    converted, _ = convert_fastreid_state({"backbone.layer1.0.se.fc.0.weight": weight}, own)
    assert torch.equal(converted["backbone.layer1.0.se.fc1.weight"], weight[:, :, None, None])
    assert torch.equal(converted["backbone.layer1.0.se.fc1.bias"], torch.zeros(4))
    assert own["backbone.layer1.0.se.fc1.weight"] == (4, 64, 1, 1)


def test_another_architecture_is_an_error_naming_the_checkpoint():
    source = _model("MODEL.BACKBONE.WITH_NL", "True")  # fastreid's one-channel non-local blocks
    target = _model("MODEL.BACKBONE.WITH_NL", "True", "MODEL.BACKBONE.NL_INTER_CHANNELS", "0")
    with pytest.raises(WeightsMismatchError) as err:
        load_model_weights(target, {"model": _as_fastreid(source)}, source="zoo.pth")
    message = str(err.value)
    assert message.startswith("zoo.pth (fastreid checkpoint, keys renamed): the weights do not fit")
    assert "backbone.NL_2.1.g.weight (1, 128, 1, 1) vs the model's (64, 128, 1, 1)" in message


def test_another_class_count_is_reinitialised_and_pixel_buffers_must_match():
    source = _as_fastreid(_model(classes=9))
    target = _model(classes=5)
    report = load_model_weights(target, {"model": source}, source="zoo.pth")
    assert report.reinitialised == ["heads.classifier.weight"]
    older = dict(source, pixel_mean=torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
    load_model_weights(target, {"model": older}, source="zoo.pth")  # the same normalisation
    older["pixel_std"] = torch.ones(1, 3, 1, 1)
    with pytest.raises(
        WeightsMismatchError, match="normalises images with pixel_std .*MODEL.PIXEL_STD"
    ):
        load_model_weights(target, {"model": older}, source="zoo.pth")
