"""TEST.PRECISE_BN in the default trainer: the hook sits before the evaluation and leaves the
evaluated model with the statistics of the batches it drew."""

import copy

import pytest
import torch

import reid.engine.precise_bn as precise_bn
from reid.engine import DefaultTrainer, default_setup
from reid.engine.hooks import EvalHook
from reid.engine.precise_bn import PreciseBN, batchnorm_layers, update_bn_stats

pytestmark = pytest.mark.slow  # an end-to-end training


def test_precise_bn_before_the_evaluation_of_a_training(tiny_cfg, monkeypatch):
    drawn: list[dict] = []
    endless = precise_bn.endless

    def recording(loader):
        for batch in endless(loader):
            drawn.append(batch)
            yield batch

    monkeypatch.setattr(precise_bn, "endless", recording)
    cfg = tiny_cfg(
        "TEST.PRECISE_BN.ENABLED", "True", "TEST.PRECISE_BN.DATASET", "Synthetic",
        "TEST.PRECISE_BN.NUM_ITER", "3", "SOLVER.MAX_EPOCH", "3", "TEST.EVAL_PERIOD", "2",
    )  # fmt: skip
    trainer = DefaultTrainer(default_setup(cfg))
    names = [type(h).__name__ for h in trainer.hooks]
    # recomputed before the epoch's checkpoint, so the saved and evaluated statistics agree
    assert names.index("PreciseBN") + 1 == names.index("PeriodicCheckpointer")
    assert names.index("PeriodicCheckpointer") + 1 == names.index("EvalHook")
    hook = next(h for h in trainer.hooks if isinstance(h, PreciseBN))
    assert hook.model is trainer.model and hook.num_iter == 3 and hook.period == 2
    assert isinstance(trainer.hooks[names.index("EvalHook")], EvalHook)
    trainer.train()
    assert len(drawn) == 6  # after epochs 2 and 3, three batches each
    assert drawn[0]["images"].shape == (8, 3, 32, 16)
    # the final statistics are those of the last three batches, on the final weights
    again = copy.deepcopy(trainer.model)
    for _, bn in batchnorm_layers(again):
        bn.running_mean.fill_(0.0)
        bn.running_var.fill_(1.0)
    update_bn_stats(again, iter(drawn[3:]), 3)
    for (name, bn), (_, ref) in zip(batchnorm_layers(trainer.model), batchnorm_layers(again)):
        torch.testing.assert_close(bn.running_mean, ref.running_mean, msg=name)
        torch.testing.assert_close(bn.running_var, ref.running_var, msg=name)
