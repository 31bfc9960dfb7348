"""The training loop on a toy model: hook order, failures, hook state, accumulation, plan state."""

import json
import logging
import math
import statistics

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from reid.engine.hooks import PeriodicWriter
from reid.engine.train_loop import (
    HookBase,
    LossDivergedError,
    LossGuard,
    SimpleTrainer,
    StepOptions,
    TrainerBase,
    split_batch,
)
from reid.utils.events import EventStorage, JSONWriter


class _Recorder(HookBase):
    def __init__(self, name, log, fail_at=None):
        self.name, self.log, self.fail_at = name, log, fail_at

    def _record(self, event):
        self.log.append((self.name, event, self.trainer.epoch, self.trainer.iter))

    def before_train(self):
        self._record("before_train")

    def after_train(self):
        self._record("after_train")

    def before_epoch(self):
        self._record("before_epoch")

    def after_epoch(self):
        self._record("after_epoch")

    def before_step(self):
        self._record("before_step")

    def after_step(self):
        self._record("after_step")
        if self.trainer.iter == self.fail_at:
            raise RuntimeError("boom")


class _Other(_Recorder):
    pass


class _CountingTrainer(TrainerBase):
    def __init__(self):
        super().__init__()
        self.steps = []

    def run_step(self):
        self.steps.append((self.epoch, self.iter))


def test_hooks_run_in_registration_order_around_epochs_and_steps():
    log = []
    trainer = _CountingTrainer()
    trainer.register_hooks([_Recorder("a", log), None, _Other("b", log)])
    trainer.train(start_epoch=1, max_epoch=3, iters_per_epoch=2)

    assert trainer.steps == [(1, 2), (1, 3), (2, 4), (2, 5)]
    expected = [("before_train", 1, 2)]
    for epoch in (1, 2):
        expected.append(("before_epoch", epoch, 2 * epoch))
        for it in (2 * epoch, 2 * epoch + 1):
            expected += [("before_step", epoch, it), ("after_step", epoch, it)]
        expected.append(("after_epoch", epoch, 2 * epoch + 2))
    expected.append(("after_train", 2, 6))
    interleaved = [(name, *event) for event in expected for name in ("a", "b")]
    assert log == interleaved
    assert trainer.error is None


def test_after_train_runs_when_training_fails_and_the_error_is_logged(caplog):
    log = []
    trainer = _CountingTrainer()
    trainer.register_hooks([_Recorder("a", log, fail_at=3), _Other("b", log)])
    with caplog.at_level(logging.ERROR, logger="reid"), pytest.raises(RuntimeError, match="boom"):
        trainer.train(start_epoch=0, max_epoch=5, iters_per_epoch=2)

    assert [e for e in log if e[1] == "after_train"] == [("a", "after_train", 1, 3)] + [
        ("b", "after_train", 1, 3)
    ]
    # b's after_step of the failing iteration never ran: a raised first.
    assert ("b", "after_step", 1, 3) not in log
    assert isinstance(trainer.error, RuntimeError)
    assert "Training stopped in epoch 2 at iteration 4: RuntimeError: boom" in caplog.text


def test_a_second_hook_of_one_class_is_refused():
    trainer = _CountingTrainer()
    trainer.register_hooks([_Recorder("a", [])])
    with pytest.raises(ValueError, match="_Recorder is already registered"):
        trainer.register_hooks([_Recorder("b", [])])


class _Stateful(HookBase):
    def __init__(self):
        self.value = 0

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def test_hook_states_are_keyed_by_class_name_and_stateless_hooks_are_left_out():
    trainer = _CountingTrainer()
    stateful = _Stateful()
    stateful.value = 7
    trainer.register_hooks([stateful, _Recorder("a", [])])
    assert trainer.hooks_state_dict() == {"_Stateful": {"value": 7}}

    other = _CountingTrainer()
    restored = _Stateful()
    other.register_hooks([restored])
    other.load_hooks_state_dict({"_Stateful": {"value": 7}, "Unknown": {"x": 1}})
    assert restored.value == 7


class _EpochSampler(Sampler):
    def __init__(self, size):
        self.size, self.epochs = size, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(range(self.size))

    def __len__(self):
        return self.size


class _ToyData(torch.utils.data.Dataset):
    def __init__(self, n=8):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g, dtype=torch.float64)
        self.y = torch.arange(n) % 2

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"images": self.x[i], "targets": self.y[i]}


class _ToyModel(nn.Module):
    """A linear model whose loss set computes one mean-squared error and one bias penalty."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.BatchNorm1d(3).double()
        self.linear = nn.Linear(3, 2).double()
        self.poison_at = None
        self.seen_weights = []
        self.norm_training = []
        self.iteration = 0

    def forward(self, batch):
        self.norm_training.append(self.norm.training)
        return {"features": self.linear(self.norm(batch["images"]))}

    def losses(self, outputs, targets, weights=None):
        self.seen_weights.append(weights)
        weights = weights or {"mse": 1.0, "bias": 1.0}
        onehot = nn.functional.one_hot(targets, 2).double()
        values = {}
        if weights.get("mse"):
            values["loss_mse"] = weights["mse"] * (outputs["features"] - onehot).pow(2).mean()
        if weights.get("bias"):
            values["loss_bias"] = weights["bias"] * self.linear.bias.pow(2).sum()
        if self.poison_at is not None and self.iteration >= self.poison_at:
            values["loss_bias"] = values["loss_bias"] * math.nan
        return values


def _toy_trainer(batch_size=8, accum=1, log_period=20, guard=None):
    model = _ToyModel()
    loader = DataLoader(_ToyData(), batch_size=batch_size, sampler=_EpochSampler(8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(
        model,
        loader,
        optimizer,
        seed=0,
        options=StepOptions(accum_steps=accum),
        log_period=log_period,
        loss_guard=guard,
    )

    class _Tick(HookBase):
        def after_step(self):
            model.iteration += 1

    trainer.register_hooks([_Tick()])
    return trainer


def test_the_sampler_is_reseeded_every_epoch_and_losses_are_logged_by_name():
    trainer = _toy_trainer()
    trainer.train(0, 3, 1)
    assert trainer.data_loader.sampler.epochs == [0, 1, 2]
    latest = trainer.storage.latest()
    assert {"loss_mse", "loss_bias", "total_loss", "time", "data_time"} <= set(latest)
    assert latest["total_loss"][0] == pytest.approx(latest["loss_mse"][0] + latest["loss_bias"][0])


def test_gradient_accumulation_equals_the_whole_batch_step():
    whole, halves = _toy_trainer(accum=1), _toy_trainer(accum=2)
    for trainer in (whole, halves):
        trainer.model.norm.eval()  # batch statistics differ between a batch and its halves
        trainer.set_training_state(None, frozen_modules=[trainer.model.norm])
        trainer.train(0, 2, 1)
    for a, b in zip(whole.model.parameters(), halves.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert len(halves.model.seen_weights) == 2 * len(whole.model.seen_weights)


def test_a_non_finite_loss_stops_naming_the_term_epoch_and_iteration():
    trainer = _toy_trainer()
    trainer.model.poison_at = 2
    with pytest.raises(FloatingPointError, match=r"'loss_bias' became nan at epoch 3, iteration 3"):
        trainer.train(0, 5, 1)
    # Fetched at the end of the epoch, before its hooks.
    assert trainer.iter == 3 and isinstance(trainer.error, FloatingPointError)
    assert trainer.loss_failure is trainer.error


def test_the_training_state_sets_loss_weights_and_frozen_modules_for_the_steps():
    trainer = _toy_trainer()
    trainer.set_training_state({"mse": 2.0}, frozen_modules=[trainer.model.norm])
    running_mean = trainer.model.norm.running_mean.clone()
    trainer.train(0, 1, 1)
    assert trainer.model.seen_weights == [{"mse": 2.0}]
    assert trainer.model.norm_training == [False]
    assert torch.equal(trainer.model.norm.running_mean, running_mean)
    assert (
        set(trainer.storage.latest()) >= {"loss_mse"}
        and "loss_bias" not in trainer.storage.latest()
    )

    trainer.set_training_state(None)
    trainer.train(1, 2, 1)
    assert trainer.model.seen_weights[-1] is None and trainer.model.norm_training[-1] is True


def test_event_storage_starts_at_the_resumed_iteration():
    trainer = _CountingTrainer()
    trainer.train(start_epoch=2, max_epoch=3, iters_per_epoch=4)
    assert isinstance(trainer.storage, EventStorage) and trainer.storage.iter == 11


def test_split_batch_is_contiguous_and_checks_divisibility():
    batch = {
        "images": torch.arange(8).view(8, 1),
        "targets": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
        "img_paths": list("abcdefgh"),
    }
    parts = split_batch(batch, 2)
    assert parts[0]["targets"].tolist() == [0, 0, 1, 1] and parts[1]["img_paths"] == list("efgh")
    with pytest.raises(ValueError, match="cannot be split into 3"):
        split_batch(batch, 3)


HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


class _ReadCounter:
    """Counts the tensor methods that read values to the host, by the phase they run in."""

    def __init__(self, monkeypatch):
        self.phase = "other"
        self.counts = {}
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, original))

    def _counting(self, name, original):
        def wrapper(tensor, *args, **kwargs):
            key = (self.phase, name)
            self.counts[key] = self.counts.get(key, 0) + 1
            return original(tensor, *args, **kwargs)

        return wrapper

    def reads(self, phase):
        return sum(n for (p, _), n in self.counts.items() if p == phase)


def _in_phase(counter, phase, method):
    def run(*args, **kwargs):
        previous, counter.phase = counter.phase, phase
        try:
            return method(*args, **kwargs)
        finally:
            counter.phase = previous

    return run


def test_steps_read_nothing_back_and_each_fetch_reads_once(monkeypatch):
    trainer = _toy_trainer(batch_size=2, log_period=3)
    fetches = []
    counter = _ReadCounter(monkeypatch)
    trainer.run_step = _in_phase(counter, "step", trainer.run_step)
    fetch = trainer.fetch_losses

    def counted_fetch(**kwargs):
        fetches.append(len(trainer._pending))
        return fetch(**kwargs)

    trainer.fetch_losses = _in_phase(counter, "fetch", counted_fetch)
    trainer.train(0, 2, 4)  # 8 iterations: fetched after 3, 6, at both epoch ends
    assert counter.reads("step") == 0
    assert [n for n in fetches if n] == [3, 1, 2, 2]
    assert counter.counts[("fetch", "tolist")] == 4 and counter.reads("fetch") == 4


def _reference_losses(iterations):
    """The toy run's per-iteration losses from a plain loop: same model, data and order."""
    model = _ToyModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = _ToyData()
    out = []
    for it in range(iterations):
        i = (2 * it) % 8
        x, y = data.x[i : i + 2], data.y[i : i + 2]
        values = model.losses({"features": model.linear(model.norm(x))}, y)
        optimizer.zero_grad()
        sum(values.values()).backward()
        optimizer.step()
        out.append({k: v.item() for k, v in values.items()})
    return out


def test_the_writers_get_every_iterations_losses_at_their_iteration(tmp_path):
    trainer = _toy_trainer(batch_size=2, log_period=3)
    path = tmp_path / "metrics.json"
    trainer.register_hooks([PeriodicWriter([JSONWriter(str(path))], period=3)])
    trainer.train(0, 2, 4)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["iteration"] for line in lines] == list(range(8))
    assert [line["epoch"] for line in lines] == [0] * 4 + [1] * 4
    for line, expected in zip(lines, _reference_losses(8)):
        assert line["loss_mse"] == expected["loss_mse"]
        assert line["loss_bias"] == expected["loss_bias"]
        assert line["total_loss"] == math.fsum(expected.values())
        assert line["data_time"] >= 0 and line["time"] >= line["data_time"]


def test_a_writer_between_fetches_is_refused():
    trainer = _toy_trainer(log_period=4)
    trainer.register_hooks([PeriodicWriter([], period=6)])
    with pytest.raises(ValueError, match=r"writers' period \(6\) must be a multiple of .* \(4\)"):
        trainer.train(0, 1, 1)


class _Saver(HookBase):
    """Stands for the checkpointers: records the epochs and iterations its hooks ran after."""

    def __init__(self):
        self.epochs, self.steps = [], []

    def after_step(self):
        self.steps.append(self.trainer.iter)

    def after_epoch(self):
        self.epochs.append(self.trainer.epoch)


@pytest.mark.parametrize(
    ("poison_at", "log_period", "last_step_hook", "saved_epochs"),
    [(5, 3, 4, [0]), (4, 3, 4, [0]), (7, 100, 7, [0]), (3, 100, 3, [])],
)
def test_a_non_finite_loss_stops_before_any_later_hook(
    poison_at, log_period, last_step_hook, saved_epochs
):
    trainer = _toy_trainer(batch_size=2, log_period=log_period)
    trainer.model.poison_at = poison_at
    saver = _Saver()
    trainer.register_hooks([saver])
    with pytest.raises(FloatingPointError) as err:
        trainer.train(0, 3, 4)
    epoch, iteration = poison_at // 4 + 1, poison_at + 1
    assert f"'loss_bias' became nan at epoch {epoch}, iteration {iteration};" in str(err.value)
    assert "The last checkpoint is intact: none written yet" in str(err.value)
    assert saver.epochs == saved_epochs  # no epoch-end hook after the poisoned step
    # Stopped at the first fetch after it: within the log period or at the epoch's end.
    assert max(saver.steps) == last_step_hook


class _Exploding(_ToyModel):
    def losses(self, outputs, targets, weights=None):
        values = super().losses(outputs, targets, weights)
        if self.iteration >= 6:
            values["loss_mse"] = values["loss_mse"] * 1e6
        return values


def test_a_diverging_loss_stops_naming_its_early_value():
    reference = _reference_losses(6)
    trainer = _toy_trainer(batch_size=2, log_period=2, guard=LossGuard(factor=50, early_iters=4))
    trainer.model.__class__ = _Exploding
    with pytest.raises(LossDivergedError) as err:
        trainer.train(0, 3, 4)
    early = statistics.median([r["loss_mse"] for r in reference[:4]])
    value = reference[5]["loss_mse"]  # not the same step: only its order of magnitude
    message = str(err.value)
    assert message.startswith("Loss term 'loss_mse' diverged at epoch 2, iteration 7: ")
    assert f"above SOLVER.DIVERGENCE.FACTOR (50) x its early value {early:.6g};" in message
    assert float(message.split(": ")[1].split(" ")[0]) > 1e4 * value
    assert isinstance(err.value, FloatingPointError)


def test_the_early_value_is_the_median_of_the_first_positive_values():
    guard = LossGuard(factor=10, early_iters=3)
    assert guard.early_value("a") is None
    for value in (0.0, 4.0, 0.0, 2.0):  # zeros do not count
        assert guard.check({"a": value}) is None
    assert guard.early_value("a") == 3.0  # median of 4 and 2 so far
    assert guard.check({"a": 30.0}) is None  # not above 10 x 3
    assert guard.early_value("a") == 4.0  # 2, 4, 30: complete
    assert guard.check({"a": 40.0}) is None and guard.early_value("a") == 4.0
    assert guard.check({"a": 40.5}) == ("a", 40.5, 4.0)
    assert guard.check({"b": -1.0, "a": 1.0}) is None and guard.early_value("b") is None
    assert guard.check({"a": 1.0, "b": math.inf}) == ("b", math.inf, None)


def test_the_guard_off_still_stops_non_finite_values_and_relearns_on_new_weights():
    off = LossGuard(factor=0)
    assert off.check({"a": 1.0}) is None and off.check({"a": 1e30}) is None
    assert off.check({"a": math.nan})[0] == "a"
    guard = LossGuard(factor=10, early_iters=2)
    guard.set_weights({"ce": 1.0})
    guard.check({"a": 1.0})
    guard.set_weights({"ce": 1.0})  # unchanged: kept
    assert guard.early_value("a") == 1.0
    guard.set_weights({"ce": 2.0})
    assert guard.early_value("a") is None
    with pytest.raises(ValueError, match=r"factor must be 0 \(off\) or > 1, got 0.5"):
        LossGuard(factor=0.5)
    with pytest.raises(ValueError, match="early_iters must be a whole number >= 1, got 0"):
        LossGuard(early_iters=0)


def test_the_guard_state_travels_with_the_hook_states():
    trainer = _toy_trainer(batch_size=2, guard=LossGuard(factor=10, early_iters=3))
    trainer.set_training_state({"mse": 1.0, "bias": 1.0})
    trainer.train(0, 1, 2)
    state = trainer.hooks_state_dict()["LossGuard"]
    assert state["weights"] == {"mse": 1.0, "bias": 1.0} and len(state["early"]["loss_mse"]) == 2

    resumed = _toy_trainer(batch_size=2, guard=LossGuard(factor=10, early_iters=3))
    resumed.load_hooks_state_dict({"LossGuard": state})
    resumed.set_training_state({"mse": 1.0, "bias": 1.0})  # the plan re-applies its stage
    assert resumed.loss_guard.state_dict() == state


def test_the_ema_hook_averages_as_torchs_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from reid.engine.hooks import EMA

    def averaged(model):
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.7), use_buffers=True)

    model = _ToyModel()
    ours, torchs = averaged(model), averaged(model)
    hook = EMA(ours, model)
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(dict(images=torch.randn(4, 3, dtype=torch.float64)))  # moves the norm's buffers
        hook.after_step()
        torchs.update_parameters(model)
        for a, b in zip(ours.state_dict().values(), torchs.state_dict().values(), strict=True):
            assert torch.equal(a, b), step
    assert int(ours.n_averaged) == 4
