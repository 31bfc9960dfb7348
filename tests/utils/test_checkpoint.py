import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from reid.utils.checkpoint import (
    Checkpointer,
    get_rng_states,
    load_checkpoint_file,
    load_model_state,
    set_rng_states,
)


def _model():
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_save_is_atomic_and_tags_last(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ckpt = Checkpointer(model, str(tmp_path), meta={"num_classes": 2}, optimizer=opt)
    path = ckpt.save("model_0001", epoch=1)
    assert os.path.basename(path) == "model_0001.pth"
    assert ckpt.get_checkpoint_file() == path
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0001.pth",
    ]  # no temporary files left
    data = torch.load(path, weights_only=True)
    assert (
        data["num_classes"] == 2
        and data["epoch"] == 1
        and "optimizer" in data
        and "rng_states" in data
    )
    ckpt.save("model_best", tag_last=False)
    assert ckpt.get_checkpoint_file() == path


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    model = _model()
    ckpt = Checkpointer(model, str(tmp_path))
    path = ckpt.save("model_final")
    before = open(path, "rb").read()

    def broken_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("model_final")
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]


def test_resume_restores_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt)
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    ckpt.save("model_0000", epoch=0, iteration=10)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())

    other = _model()
    other_opt = torch.optim.Adam(other.parameters(), lr=0.01)
    extra = Checkpointer(other, str(tmp_path), optimizer=other_opt).resume_or_load("", resume=True)
    assert extra["epoch"] == 0 and extra["iteration"] == 10
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert other_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_without_checkpoint_loads_weights_only(tmp_path):
    source = _model()
    weights = tmp_path / "weights.pth"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, weights)
    target = _model()
    extra = Checkpointer(target, str(tmp_path / "run")).resume_or_load(str(weights), resume=True)
    assert extra == {}
    assert torch.equal(target[0].weight, source[0].weight)  # "module." prefix stripped


def test_shape_mismatch_is_an_error_naming_the_key(tmp_path):
    state = _model().state_dict()
    state["2.weight"] = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"2\.weight: checkpoint \(5, 3\) vs model \(2, 3\)"):
        load_model_state(_model(), state, source="x.pth")


def test_missing_and_unexpected_keys_are_reported():
    state = _model().state_dict()
    del state["0.bias"]
    state["extra.weight"] = torch.zeros(1)
    missing, unexpected = load_model_state(_model(), state, source="x.pth")
    assert missing == ["0.bias"] and unexpected == ["extra.weight"]


def test_load_rejects_pickled_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "obj": _model()}, path)  # a whole module needs unpickling code
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint_file(str(path))


def test_missing_checkpoint_file():
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_checkpoint_file("/nowhere.pth")


def test_rng_state_round_trip():
    states = get_rng_states()
    a = (random.random(), np.random.rand(), torch.rand(2))
    set_rng_states(states)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_model_only_checkpoint_has_no_training_state(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    ckpt = Checkpointer(model, str(tmp_path), meta={"num_classes": 2}, optimizer=opt)
    ckpt.save("model_0000")
    path = ckpt.save("model_best", tag_last=False, model_only=True, epoch=3)
    data = torch.load(path, weights_only=True)
    assert set(data) == {"model", "num_classes", "epoch"}
    assert ckpt.get_checkpoint_file().endswith("model_0000.pth")
