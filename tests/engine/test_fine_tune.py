"""Fine-tuning on another identity set: MODEL.WEIGHTS of a 150-identity run trains on 100."""

import logging
import os

import pytest
import torch

from reid.engine import DefaultTrainer
from reid.utils.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.slow  # two end-to-end trainings

LOSSES = ("MODEL.LOSSES.NAME", "('CrossEntropyLoss', 'TripletLoss', 'CenterLoss')")
ONE_EPOCH = ("SOLVER.MAX_EPOCH", "1", "SOLVER.STEPS", "[1]", "TEST.EVAL_PERIOD", "0")


def test_weights_of_150_identities_fine_tune_on_100_with_one_log_line(tiny_cfg, caplog):
    first = tiny_cfg("DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "150", *LOSSES, *ONE_EPOCH, output="a")
    trainer = DefaultTrainer(first)
    trainer.resume_or_load(resume=False)
    trainer.train()
    weights = os.path.join(first.OUTPUT_DIR, "model_final.pth")
    source = load_checkpoint_file(weights)
    assert source["num_classes"] == 150
    assert source["model"]["heads.classifier.weight"].shape[0] == 150

    second = tiny_cfg(
        "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "100", "MODEL.WEIGHTS", weights, *LOSSES, *ONE_EPOCH,
        output="b",
    )  # fmt: skip
    trainer = DefaultTrainer(second)
    with caplog.at_level(logging.INFO, logger="reid.utils.checkpoint"):
        trainer.resume_or_load(resume=False)
    lines = [r.getMessage() for r in caplog.records if "another identity set" in r.getMessage()]
    assert lines == [
        f"{weights} holds another identity set: re-initialised heads.classifier.weight, "
        f"loss_set.losses.CenterLoss.centers for this one"
    ]
    state = trainer.model.state_dict()
    assert state["heads.classifier.weight"].shape[0] == 100
    assert state["loss_set.losses.CenterLoss.centers"].shape[0] == 100
    for key, value in source["model"].items():  # everything else is the first run's
        if key not in ("heads.classifier.weight", "loss_set.losses.CenterLoss.centers"):
            assert torch.equal(state[key], value), key
    trainer.train()
    assert (
        load_checkpoint_file(os.path.join(second.OUTPUT_DIR, "model_final.pth"))["num_classes"]
        == 100
    )
