"""Nothing lost, nothing silently wrong: the weights are saved before evaluation, a failed
evaluation is re-run by --resume, --resume finds the newest loadable checkpoint and never starts
over silently, and weights load only when they fit (MODEL.WEIGHTS, PRETRAIN_PATH, resume)."""

import json
import os
import shutil

import pytest
import torch
import torchvision

from reid.data.datasets.synthetic import SyntheticSpec, ensure_synthetic
from reid.engine import DefaultTrainer, default_setup
from reid.engine.hooks import EvaluationError
from reid.engine.train_loop import HookBase
from reid.modeling import build_model
from reid.utils.checkpoint import (
    ExistingRunError,
    WeightsMismatchError,
    completed_epochs,
    load_checkpoint_file,
)
from reid.utils.run_lock import held_output_dirs, release_output_dir

pytestmark = pytest.mark.slow  # end-to-end trainings


@pytest.fixture(autouse=True)
def _release_locks():
    yield
    for folder in held_output_dirs():
        release_output_dir(folder, force=True)


def _trainer(cfg, resume=False, extra_hooks=()):
    trainer = DefaultTrainer(default_setup(cfg))
    trainer.register_hooks(list(extra_hooks))
    trainer.resume_or_load(resume=resume)
    return trainer


def _train(cfg, resume=False, extra_hooks=()):
    trainer = _trainer(cfg, resume, extra_hooks)
    trainer.train()
    return trainer


def _weights(path):
    return load_checkpoint_file(path)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _results(cfg):
    return json.load(open(os.path.join(cfg.OUTPUT_DIR, "results.json")))


@pytest.fixture
def custom_test_set(tmp_path, tiny_cfg):
    """``make(name) -> (opts, a gallery image)``: the tiny synthetic test split copied as a Custom
    dataset (Market layout) that the runs evaluate on."""

    def make(name):
        cfg = tiny_cfg()
        source = ensure_synthetic(
            SyntheticSpec.from_config(cfg), os.path.join(cfg.DATASETS.ROOT, "synthetic")
        )
        folder = tmp_path / name
        for split in ("query", "bounding_box_test"):
            shutil.copytree(os.path.join(source, split), folder / split)
        (folder / "bounding_box_train").mkdir()
        gallery = sorted((folder / "bounding_box_test").glob("0*.jpg"))[-1]
        opts = ["DATASETS.TESTS", "('Custom',)", "DATASETS.CUSTOM.DIR", str(folder)]
        return opts, gallery

    return make


def test_a_failed_final_evaluation_keeps_the_final_weights_and_resume_evaluates_them(
    tiny_cfg, custom_test_set
):
    opts, image = custom_test_set("test_set")
    good = image.read_bytes()
    image.write_bytes(b"not a JPEG")  # readable as a file, so found only by the evaluation
    cfg = tiny_cfg(*opts, "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "0")
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    with pytest.raises(EvaluationError) as info:
        _train(cfg)
    message = str(info.value)
    assert message.startswith(
        f"evaluation after epoch 1 failed: OSError: cannot read image {image}: "
    )
    assert message.endswith(
        f"The weights of epoch 1 are saved in {final}: fix the cause, then run again with "
        f"--resume, which evaluates them before training on"
    )
    assert completed_epochs(load_checkpoint_file(final)) == 1
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "results.json"))
    weights = _weights(final)

    with pytest.raises(EvaluationError):  # not fixed yet: the same error, nothing overwritten
        _train(cfg, resume=True)
    image.write_bytes(good)
    trainer = _train(cfg, resume=True)
    assert trainer.start_epoch == 1
    results = _results(cfg)
    assert results["epoch"] == 1 and 0 <= results["results"]["Custom"]["mAP"] <= 100
    _assert_same_weights(_weights(final), weights)  # evaluated, not trained again
    best = load_checkpoint_file(os.path.join(cfg.OUTPUT_DIR, "model_best.pth"))
    assert completed_epochs(best) == 1
    _assert_same_weights(best["model"], weights)


def test_an_evaluation_failing_between_checkpoints_saves_its_epoch_and_resume_is_exact(
    tiny_cfg, custom_test_set
):
    opts = ("SOLVER.MAX_EPOCH", "3", "SOLVER.STEPS", "[2]", "SOLVER.CHECKPOINT_PERIOD", "3")
    opts += ("TEST.EVAL_PERIOD", "1")
    full_opts, _ = custom_test_set("good")
    full = tiny_cfg(*full_opts, *opts, output="full")
    _train(full)

    broken_opts, image = custom_test_set("broken")
    good = image.read_bytes()
    image.write_bytes(b"")
    broken = tiny_cfg(*broken_opts, *opts, output="broken")
    with pytest.raises(EvaluationError, match="saved in .*broken/model_0001.pth"):
        _train(broken)
    # Epoch 1 has no periodic checkpoint (period 3): its weights were saved for the failure.
    assert sorted(n for n in os.listdir(broken.OUTPUT_DIR) if n.endswith(".pth")) == [
        "model_0001.pth"
    ]
    image.write_bytes(good)
    resumed = _train(broken, resume=True)
    assert resumed.start_epoch == 1
    log = open(os.path.join(broken.OUTPUT_DIR, "log.txt")).read()
    assert "The evaluation after epoch 1 did not finish: evaluating now" in log

    for name in ("model_final.pth", "model_best.pth"):
        a = load_checkpoint_file(os.path.join(full.OUTPUT_DIR, name))
        b = load_checkpoint_file(os.path.join(broken.OUTPUT_DIR, name))
        assert a["epoch"] == b["epoch"], name
        _assert_same_weights(a["model"], b["model"])
    assert _results(broken)["epoch"] == 3
    expected = _results(full)["results"]["Custom"]
    for key, value in _results(broken)["results"]["Custom"].items():
        assert value == pytest.approx(expected[key], abs=1e-9), key


class _CrashAt(HookBase):
    def __init__(self, epoch):
        self.epoch = epoch

    def before_epoch(self):
        if self.trainer.epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def test_resume_when_last_checkpoint_names_a_missing_file_takes_the_newest_other(tiny_cfg):
    cfg = tiny_cfg("SOLVER.MAX_EPOCH", "3", "SOLVER.STEPS", "[2]", "TEST.EVAL_PERIOD", "0")
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, extra_hooks=[_CrashAt(2)])
    out = cfg.OUTPUT_DIR
    os.remove(os.path.join(out, "model_0002.pth"))  # last_checkpoint names it
    first = _weights(os.path.join(out, "model_0001.pth"))
    resumed = _train(cfg, resume=True)
    assert resumed.start_epoch == 1  # not 0: model_0001.pth is not overwritten by a fresh start
    _assert_same_weights(_weights(os.path.join(out, "model_0001.pth")), first)
    assert completed_epochs(load_checkpoint_file(os.path.join(out, "model_final.pth"))) == 3
    log = open(os.path.join(out, "log.txt")).read()
    assert "model_0002.pth, which cannot be loaded; resumed from the newest loadable" in log

    # Starting from scratch over these checkpoints is refused, and says how to force it.
    with pytest.raises(ExistingRunError, match="continue that run with --resume, start over"):
        _trainer(cfg)


@pytest.fixture
def weight_files(tmp_path, tiny_cfg):
    """Weight files that do not fit the tiny ResNet-34 ... or ResNet-18 run."""
    torch.manual_seed(0)
    files = {
        "imagenet": tmp_path / "resnet18_imagenet.pth",  # a torchvision state dict
        "unrelated": tmp_path / "unrelated.pth",
        "r18": tmp_path / "r18_model_final.pth",  # a ReID checkpoint of ResNet-18
    }
    torch.save(torchvision.models.resnet18().state_dict(), files["imagenet"])
    torch.save({"encoder.weight": torch.zeros(3, 3), "step": torch.tensor(4)}, files["unrelated"])
    cfg = tiny_cfg("MODEL.HEADS.NUM_CLASSES", "6")
    torch.save({"model": build_model(cfg).state_dict(), "num_classes": 6}, files["r18"])
    return {k: str(v) for k, v in files.items()}


def test_model_weights_that_do_not_fit_are_an_error_naming_the_file(tiny_cfg, weight_files):
    cases = [
        ("imagenet", [], "missing from the weights: backbone.conv1.weight"),
        ("unrelated", [], "no tensor of the weights fits the model"),
        ("r18", ["MODEL.BACKBONE.DEPTH", "34x"], "missing from the weights: backbone.layer1.2"),
    ]
    for k, (name, opts, problem) in enumerate(cases):
        path = weight_files[name]
        cfg = tiny_cfg(*opts, "MODEL.WEIGHTS", path, output=f"run{k}")
        with pytest.raises(WeightsMismatchError) as info:
            _trainer(cfg)  # fine-tuning from MODEL.WEIGHTS
        message = str(info.value)
        assert message.startswith(f"{path}: the weights do not fit the model (Baseline):"), name
        assert problem in message, name
        assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    # The fitting ResNet-18 checkpoint loads (its classifier fits the 6 identities).
    _trainer(tiny_cfg("MODEL.WEIGHTS", weight_files["r18"], output="fits"))


def test_a_pretrain_path_to_a_wrong_file_is_an_error_naming_it(tiny_cfg, weight_files, tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    cases = [
        (weight_files["unrelated"], WeightsMismatchError, "no tensor of the weights fits"),
        (weight_files["r18"], WeightsMismatchError, "not in the model: backbone.conv1.weight"),
        (str(text), ValueError, "cannot be read as a PyTorch weight file"),
    ]
    for k, (path, error, problem) in enumerate(cases):
        cfg = tiny_cfg(
            "MODEL.BACKBONE.PRETRAIN",
            "True",
            "MODEL.BACKBONE.PRETRAIN_PATH",
            path,
            output=f"run{k}",
        )
        with pytest.raises(error) as info:
            _trainer(cfg)
        assert str(info.value).startswith(path) and problem in str(info.value), path


def test_a_missing_or_empty_test_set_is_an_error_before_training(
    tiny_cfg, custom_test_set, tmp_path
):
    missing = tiny_cfg(
        "DATASETS.TESTS", "('Custom',)", "DATASETS.CUSTOM.DIR", str(tmp_path / "nowhere")
    )
    with pytest.raises(FileNotFoundError, match="Custom: folder not found: .*nowhere"):
        _trainer(missing)
    opts, _ = custom_test_set("empty_query")
    for image in (tmp_path / "empty_query" / "query").iterdir():
        image.unlink()
    empty = tiny_cfg(*opts, output="empty")
    with pytest.raises(ValueError, match=r"test dataset Custom \(.*\) has an empty query split"):
        _trainer(empty)
    for cfg in (missing, empty):  # nothing was trained
        assert not [n for n in os.listdir(cfg.OUTPUT_DIR) if n.endswith(".pth")]
