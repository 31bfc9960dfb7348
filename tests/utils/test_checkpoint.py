import os
import random
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from reid.utils import file_io
from reid.utils.checkpoint import (
    Checkpointer,
    ExistingRunError,
    ResumeError,
    WeightsMismatchError,
    completed_epochs,
    get_rng_states,
    identity_keys,
    load_checkpoint_file,
    load_state_strict,
    set_rng_states,
)
from reid.utils.file_io import DiskFullError


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


class _Classifier(nn.Linear):
    identity_parameters = ("weight", "bias")


def _net(classes=2, dim=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, dim), nn.BatchNorm1d(dim), _Classifier(dim, classes))


def test_weights_that_fit_load_exactly_and_the_report_lists_them():
    source, target = _net(), _net()
    for p in target.parameters():
        nn.init.zeros_(p)
    report = load_state_strict(target, source.state_dict(), source="a.pth")
    assert report.loaded == list(source.state_dict())
    assert not (report.missing or report.ignored or report.reinitialised)
    for a, b in zip(source.state_dict().values(), target.state_dict().values()):
        assert torch.equal(a, b)


def test_missing_unexpected_and_mismatched_keys_are_one_error_naming_the_source():
    state = _net().state_dict()
    del state["0.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["1.running_mean"] = torch.zeros(5)
    with pytest.raises(WeightsMismatchError) as err:
        load_state_strict(_net(), state, source="MODEL.WEIGHTS x.pth")
    message = str(err.value)
    assert message.startswith("MODEL.WEIGHTS x.pth: the weights do not fit the model (Sequential)")
    assert "missing from the weights: 0.bias" in message
    assert "not in the model: extra.weight" in message
    assert "of another shape: 1.running_mean (5,) vs the model's (3,)" in message


def test_nothing_loaded_is_an_error():
    with pytest.raises(WeightsMismatchError, match="no tensor of the weights fits the model"):
        load_state_strict(
            nn.Linear(2, 2),
            {"other.weight": torch.zeros(1)},
            source="y.pth",
            foreign_keys=("other.",),
        )


def test_a_classifier_of_another_identity_set_is_reinitialised_with_a_log_line(caplog):
    trained = _net(classes=150).state_dict()
    target = _net(classes=100)
    initial = target[2].weight.detach().clone()
    with caplog.at_level("INFO", logger="reid"):
        report = load_state_strict(target, trained, source="run150/model_final.pth")
    assert report.reinitialised == ["2.weight", "2.bias"]
    assert torch.equal(target[2].weight, initial)
    assert torch.equal(target[0].weight, trained["0.weight"])
    assert "run150/model_final.pth holds another identity set: re-initialised 2.weight, 2.bias" in (
        caplog.text
    )
    absent = {k: v for k, v in trained.items() if not k.startswith("2.")}
    assert load_state_strict(_net(classes=100), absent, source="s").reinitialised == [
        "2.weight",
        "2.bias",
    ]


def test_on_resume_and_for_other_dimensions_the_classifier_must_fit():
    with pytest.raises(
        WeightsMismatchError, match=r"2.weight \(150, 3\) vs the model's \(100, 3\)"
    ):
        load_state_strict(_net(100), _net(150).state_dict(), source="r", reinit_identities=False)
    with pytest.raises(
        WeightsMismatchError, match=r"2.weight \(100, 5\) vs the model's \(100, 3\)"
    ):
        load_state_strict(_net(100), _net(100, dim=5).state_dict(), source="r")


def test_new_modules_may_be_missing_and_foreign_keys_are_ignored():
    state = {k: v for k, v in _net().state_dict().items() if not k.startswith("1.")}
    state["fc.weight"] = torch.zeros(1000, 3)
    report = load_state_strict(
        _net(), state, source="imagenet", new_modules=("1.",), foreign_keys=("fc.",)
    )
    assert report.missing == [
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert report.ignored == ["fc.weight"]
    assert "left as initialised (not in the weights): 1.weight" in report.summary()


def test_identity_keys_are_collected_from_the_modules():
    assert identity_keys(_net()) == {"2.weight", "2.bias"}


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
    assert set(data) == {"model", "checkpoint_version", "num_classes", "epoch"}
    assert ckpt.get_checkpoint_file().endswith("model_0000.pth")


def test_completed_epochs_reads_both_checkpoint_versions():
    # Version 1 stored the 0-based index of the last completed epoch, version 2 the count.
    assert completed_epochs({"epoch": 4}) == 5
    assert completed_epochs({"epoch": 5, "checkpoint_version": 2}) == 5


def test_a_tagged_save_is_remembered_as_the_last_checkpoint(tmp_path):
    ckpt = Checkpointer(_model(), str(tmp_path))
    assert ckpt.last_saved is None
    first = ckpt.save("model_0001", epoch=1)
    ckpt.save("model_best", tag_last=False, model_only=True)
    assert ckpt.last_saved == first


def _saved_at(tmp_path, name, epochs, version=2, **extra):
    """A training checkpoint whose weights are all ``epochs`` (to tell which one was loaded)."""
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(epochs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt)
    path = ckpt.save(name, epoch=epochs if version == 2 else epochs - 1, iteration=10 * epochs)
    if version == 1:  # written before checkpoints counted completed epochs
        data = torch.load(path, weights_only=True)
        del data["checkpoint_version"]
        torch.save(data, path)
    return path


def _resumer(tmp_path):
    model = _model()
    return model, Checkpointer(
        model, str(tmp_path), optimizer=torch.optim.SGD(model.parameters(), lr=0.1)
    )


def test_resume_falls_back_to_the_newest_loadable_checkpoint_by_stored_epochs(tmp_path, caplog):
    _saved_at(tmp_path, "model_0003", 3)
    _saved_at(tmp_path, "model_0004", 5, version=1)  # old naming: epoch index 4 = 5 completed
    _saved_at(tmp_path, "model_0002", 2)
    truncated = _saved_at(tmp_path, "model_0006", 6)
    with open(truncated, "r+b") as f:
        f.truncate(300)
    best = Checkpointer(_model(), str(tmp_path)).save(
        "model_best", tag_last=False, model_only=True, epoch=9
    )
    (tmp_path / "last_checkpoint").write_text("model_0007.pth")  # a file that is gone
    model, ckpt = _resumer(tmp_path)
    paths, notes = ckpt.resume_candidates()
    assert [os.path.basename(p) for p in paths] == [
        "model_0004.pth",
        "model_0003.pth",
        "model_0002.pth",
    ]
    assert any("model_0007.pth" in n and "not found" in n for n in notes)
    assert any(n.startswith(truncated) and "cannot be read" in n for n in notes)
    assert any(n.startswith(best) and "weights only" in n for n in notes)
    with caplog.at_level("WARNING", logger="reid"):
        extra = ckpt.resume_or_load("", resume=True)
    assert completed_epochs(extra) == 5
    assert torch.all(model[0].weight == 5)
    assert ckpt.last_saved == os.path.join(str(tmp_path), "model_0004.pth")
    assert "model_0007.pth, which cannot be loaded; resumed from" in caplog.text


def test_resume_from_an_unreadable_tagged_checkpoint_takes_the_previous_one(tmp_path, caplog):
    _saved_at(tmp_path, "model_0001", 1)
    tagged = _saved_at(tmp_path, "model_0002", 2)
    with open(tagged, "wb") as f:
        f.write(b"PK\x03\x04 not a whole zip file")
    model, ckpt = _resumer(tmp_path)
    with caplog.at_level("WARNING", logger="reid"):
        extra = ckpt.resume_or_load("", resume=True)
    assert completed_epochs(extra) == 1 and torch.all(model[0].weight == 1)
    assert f"Cannot resume from {tagged}" in caplog.text


def test_resume_when_no_checkpoint_loads_is_an_error_listing_each(tmp_path):
    for name in ("model_0001.pth", "model_final.pth"):
        (tmp_path / name).write_bytes(b"garbage")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    _, ckpt = _resumer(tmp_path)
    with pytest.raises(ResumeError) as info:
        ckpt.resume_or_load("", resume=True)
    message = str(info.value)
    assert "holds checkpoints but none can be loaded" in message
    assert "model_0001.pth" in message and "model_final.pth" in message
    assert "--start-over" in message


def test_starting_from_scratch_over_checkpoints_is_an_error_unless_forced(tmp_path, caplog):
    _saved_at(tmp_path, "model_0002", 2)
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "log.txt").write_text("log")
    model = _model()
    ckpt = Checkpointer(model, str(tmp_path), run_outputs=("results.json", "absent.json"))
    with pytest.raises(ExistingRunError) as info:
        ckpt.resume_or_load("", resume=False)
    assert "last_checkpoint, model_0002.pth" in str(info.value)
    assert "--resume" in str(info.value) and "--start-over" in str(info.value)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "log.txt",
        "model_0002.pth",
        "results.json",
    ]
    with caplog.at_level("WARNING", logger="reid"):
        assert ckpt.resume_or_load("", resume=False, start_over=True) == {}
    moved = [n for n in os.listdir(tmp_path) if n.startswith("previous_")]
    assert len(moved) == 1 and sorted(os.listdir(tmp_path)) == sorted(["log.txt", *moved])
    assert sorted(os.listdir(tmp_path / moved[0])) == [
        "last_checkpoint",
        "model_0002.pth",
        "results.json",
    ]
    assert "Starting over: moved" in caplog.text
    # A process that does not write (another DDP rank) refuses too, but moves nothing.
    _saved_at(tmp_path, "model_0001", 1)
    reader = Checkpointer(_model(), str(tmp_path), save_to_disk=False)
    with pytest.raises(ExistingRunError):
        reader.resume_or_load("", resume=False)
    reader.resume_or_load("", resume=False, start_over=True)
    assert "model_0001.pth" in os.listdir(tmp_path)


def test_a_full_disk_names_the_checkpoint_and_the_intact_previous_one(tmp_path, monkeypatch):
    ckpt = Checkpointer(_model(), str(tmp_path))
    first = ckpt.save("model_0001", epoch=1)
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):  # writes answer ENOSPC, as on a full disk
        fd, path = real(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(file_io.tempfile, "mkstemp", mkstemp)
    with pytest.raises(DiskFullError) as info:
        ckpt.save("model_0002", epoch=2)
    assert str(info.value) == (
        f"no space left on device writing {tmp_path}/model_0002.pth; the previous "
        f"checkpoint {first} is intact. Free some space, then continue with --resume"
    )
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0001.pth"
