"""The default trainer's speed options on the tiny end-to-end run: no host read in the steady
state, the divergence guard, torch.compile, channels-last, optimizer implementations."""

import json
import os
import threading

import pytest
import torch

from reid.config.schema import ConfigError
from reid.engine import DefaultTrainer, default_setup
from reid.engine.train_loop import HookBase, LossDivergedError
from reid.utils.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.slow  # end-to-end trainings

HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


class _ReadCounter:
    """Counts host reads of tensor values per phase of the training thread (the prefetch
    thread's own work is not a phase of the step).

    torch's non-fused optimizers keep their step counters on the host on every device and read
    them there (no device synchronisation): those reads are counted apart.
    """

    def __init__(self, monkeypatch, optimizer):
        self._local = threading.local()
        self._optimizer = optimizer
        self.counts: dict[str, int] = {}
        for name in HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(getattr(torch.Tensor, name)))

    def _counting(self, original):
        def wrapper(tensor, *args, **kwargs):
            phase = getattr(self._local, "phase", None)
            if phase is not None:
                steps = [s.get("step") for s in self._optimizer.state.values()]
                if any(tensor is step for step in steps) and tensor.device.type == "cpu":
                    phase = "host step counters"
                self.counts[phase] = self.counts.get(phase, 0) + 1
            return original(tensor, *args, **kwargs)

        return wrapper

    def wrap(self, phase, method):
        def run(*args, **kwargs):
            previous = getattr(self._local, "phase", None)
            self._local.phase = phase
            try:
                return method(*args, **kwargs)
            finally:
                self._local.phase = previous

        return run


def _train(cfg, hooks=()):
    trainer = DefaultTrainer(default_setup(cfg))
    trainer.register_hooks(list(hooks))
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_the_steady_state_reads_nothing_back_from_the_device(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(
        "INPUT.BACKEND",
        "batched",
        "DATALOADER.PREFETCH_THREAD",
        "on",  # what "auto" chooses on a GPU: batches are augmented outside the step
        "INPUT.PADDING.ENABLED",
        "True",
        "INPUT.REA.ENABLED",
        "True",
        "LOG_PERIOD",
        "4",
        "SOLVER.MAX_EPOCH",
        "4",
        "TEST.EVAL_PERIOD",
        "0",
    )
    trainer = DefaultTrainer(default_setup(cfg))
    counter = _ReadCounter(monkeypatch, trainer.optimizer)
    trainer.run_step = counter.wrap("step", trainer.run_step)
    fetches = []
    fetch = trainer.fetch_losses

    def counted_fetch(**kwargs):
        fetches.append(bool(trainer._pending))
        fetch(**kwargs)

    trainer.fetch_losses = counter.wrap("fetch", counted_fetch)
    for hook in trainer.hooks:
        if type(hook).__name__ not in ("EvalHook", "PeriodicCheckpointer", "BestCheckpointer"):
            hook.after_step = counter.wrap("step hooks", hook.after_step)
            hook.before_step = counter.wrap("step hooks", hook.before_step)
    trainer.train()
    assert trainer.max_iter == 12
    assert counter.counts.get("step", 0) == 0 and counter.counts.get("step hooks", 0) == 0
    assert counter.counts["fetch"] == sum(fetches)  # one transfer per fetch with values
    # Adam's host-resident step counters: one read per parameter and step, no device sync.
    params = sum(1 for p in trainer.model.parameters() if p.requires_grad)
    assert counter.counts["host step counters"] == trainer.max_iter * params


def test_a_finite_divergence_stops_the_run_before_its_checkpoint(tiny_cfg):
    # The case: Adam at LR 1e6 sends the loss to 1e13 and trained to the end.
    cfg = tiny_cfg("SOLVER.BASE_LR", "1e6", "SOLVER.MAX_EPOCH", "2")
    with pytest.raises(LossDivergedError) as err:
        _train(cfg)
    message = str(err.value)
    assert message.startswith("Loss term 'loss_cls' diverged at epoch 1, iteration 2: ")
    assert "SOLVER.DIVERGENCE.FACTOR (100) x its early value" in message
    assert message.endswith("The last checkpoint is intact: none written yet")
    assert not [f for f in os.listdir(cfg.OUTPUT_DIR) if f.endswith(".pth")]


def test_the_guard_stops_what_it_lets_run_when_off(tiny_cfg):
    opts = ("SOLVER.BASE_LR", "10", "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "0")
    opts += ("MODEL.LOSSES.NAME", "('CrossEntropyLoss',)")
    off = tiny_cfg(*opts, "SOLVER.DIVERGENCE.FACTOR", "0", output="off")
    _train(off)
    lines = [json.loads(text) for text in open(os.path.join(off.OUTPUT_DIR, "metrics.json"))]
    losses = [line["loss_cls"] for line in lines]
    assert max(losses) > 100 * losses[0]  # diverged, finite, trained to the end
    assert os.path.exists(os.path.join(off.OUTPUT_DIR, "model_final.pth"))
    with pytest.raises(LossDivergedError, match="'loss_cls' diverged at epoch 1"):
        _train(tiny_cfg(*opts, output="on"))
    with pytest.raises(ConfigError, match=r"SOLVER.DIVERGENCE.FACTOR must be 0 \(off\) or > 1"):
        DefaultTrainer(default_setup(tiny_cfg("SOLVER.DIVERGENCE.FACTOR", "1")))


def _final_state(cfg):
    return load_checkpoint_file(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))["model"]


def test_compiling_the_step_trains_the_same_weights(tiny_cfg):
    opts = ("SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "0")
    eager = tiny_cfg(*opts, output="eager")
    _train(eager)
    compiled = tiny_cfg(
        *opts, "SOLVER.COMPILE.ENABLED", "True", "SOLVER.COMPILE.BACKEND", "eager", output="c"
    )
    trainer = _train(compiled)
    assert type(trainer.train_module).__name__ == "OptimizedModule"
    a, b = _final_state(eager), _final_state(compiled)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    for key, value, problem in (
        ("MODE", "fastest", "SOLVER.COMPILE.MODE must be one of"),
        ("BACKEND", "nope", "SOLVER.COMPILE.BACKEND must be one of"),
    ):
        bad = tiny_cfg("SOLVER.COMPILE.ENABLED", "True", f"SOLVER.COMPILE.{key}", value)
        with pytest.raises(ConfigError, match=problem):
            DefaultTrainer(default_setup(bad))
    bad = tiny_cfg(
        "SOLVER.COMPILE.ENABLED",
        "True",
        "SOLVER.COMPILE.BACKEND",
        "eager",
        "SOLVER.COMPILE.MODE",
        "max-autotune",
    )
    with pytest.raises(ConfigError, match="applies to the inductor backend only"):
        DefaultTrainer(default_setup(bad))


class _Formats(HookBase):
    """Records the memory format of the images each step gives the model."""

    def __init__(self):
        self.channels_last = []

    def before_train(self):
        model = self.trainer.model
        original = model.forward

        def forward(batch):
            images = batch["images"]
            self.channels_last.append(images.is_contiguous(memory_format=torch.channels_last))
            return original(batch)

        model.forward = forward


def test_channels_last_trains_and_evaluates_in_that_format(tiny_cfg):
    cfg = tiny_cfg("SOLVER.CHANNELS_LAST", "True", "SOLVER.MAX_EPOCH", "1")
    formats = _Formats()
    trainer = _train(cfg, hooks=[formats])
    conv = trainer.model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert formats.channels_last and all(formats.channels_last)  # training and test batches
    results = json.load(open(os.path.join(cfg.OUTPUT_DIR, "results.json")))
    assert set(results["results"]["Synthetic"]) >= {"Rank-1", "mAP"}


@pytest.mark.parametrize("impl", ["fused", "foreach", "for_loop"])
def test_each_optimizer_implementation_trains(tiny_cfg, impl):
    cfg = tiny_cfg("SOLVER.OPT_IMPL", impl, "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "0")
    trainer = _train(cfg)
    defaults = trainer.optimizer.defaults
    assert (defaults["fused"], defaults["foreach"]) == {
        "fused": (True, None),
        "foreach": (None, True),
        "for_loop": (None, False),
    }[impl]
