"""Hooks of the default trainer: LR schedule, training plan, EMA, checkpoints, evaluation, the best
checkpoint, metric writers, progress bar."""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from reid.solver.stages import Stage, stage_at_epoch
from reid.utils import comm
from reid.utils.checkpoint import Checkpointer, completed_epochs
from reid.utils.events import EventWriter

from .train_loop import HookBase, SimpleTrainer

logger = logging.getLogger(__name__)


class LRScheduler(HookBase):
    """Logs the LR used by this iteration, then steps the per-iteration scheduler."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        self.optimizer = optimizer
        self.scheduler = scheduler

    def after_step(self) -> None:
        lr = max(g["lr"] for g in self.optimizer.param_groups)
        self.trainer.storage.put_scalar("lr", lr, smoothing=False)
        self.scheduler.step()


class PeriodicCheckpointer(HookBase):
    """Saves ``model_XXXX`` (XXXX = completed epochs) every ``period`` epochs and ``model_final``
    after the last epoch.

    A checkpoint holds what ``resume`` needs: the completed epochs, the next iteration and the
    state of every stateful hook (the best metric so far, ...). Register it before the hooks that
    can fail after an epoch (evaluation, reports), so that the epoch's weights are safe first.
    """

    def __init__(self, checkpointer: Checkpointer, period: int) -> None:
        self.checkpointer = checkpointer
        self.period = period
        self._saved: tuple[int, str | None] | None = None  # (completed epochs, path)

    def save(self, name: str) -> str | None:
        trainer = self.trainer
        path = self.checkpointer.save(
            name,
            epoch=trainer.epoch + 1,
            iteration=trainer.iter,
            hooks=trainer.hooks_state_dict(),
        )
        self._saved = (trainer.epoch + 1, path)
        return path

    def after_epoch(self) -> None:
        done = self.trainer.epoch + 1
        if done == self.trainer.max_epoch:
            self.save("model_final")
        elif self.period > 0 and done % self.period == 0:
            self.save(f"model_{done:04d}")

    def before_train(self) -> None:
        start = self.trainer.start_epoch
        if start > 0:  # resumed: the checkpoint of the completed epochs is on disk
            self._saved = (start, self.checkpointer.last_saved)

    def save_epoch(self, done: int) -> str | None:
        """The checkpoint of ``done`` completed epochs: the one saved or resumed from, else saved
        now if ``done`` is the epoch that just ended (``model_XXXX``); its path (None if neither
        or on processes that do not write)."""
        if self._saved is not None and self._saved[0] == done:
            return self._saved[1]
        if done != self.trainer.epoch + 1:
            return None
        return self.save("model_final" if done == self.trainer.max_epoch else f"model_{done:04d}")


class EvaluationError(RuntimeError):
    """An evaluation during training failed; the weights of its epoch were saved first."""


class EvalHook(HookBase):
    """Evaluates every ``period`` epochs and after the last; puts the results in the storage.

    ``eval_function(epoch)`` evaluates the weights after ``epoch`` completed epochs and returns
    {test set: {metric: value}}; each value is stored as the scalar ``"<test set>/<metric>"`` at
    the epoch's last iteration (where :class:`BestCheckpointer` reads it).

    Evaluations run after the epoch's checkpoint (register this hook after
    :class:`PeriodicCheckpointer`). When one fails, ``save_weights(epoch)`` saves the epoch's
    weights if no checkpoint holds them yet, and the error says where they are. A run resumed from a
    checkpoint whose evaluation did not finish evaluates it before training on; when
    ``recorded(epoch)`` returns that evaluation's results (written before the interruption),
    they are used instead, so the state is that of an uninterrupted run.
    """

    def __init__(
        self,
        period: int,
        eval_function: Callable[[int], Mapping[str, Mapping[str, float]]],
        save_weights: Callable[[int], str | None] | None = None,
        recorded: Callable[[int], Mapping[str, Mapping[str, float]] | None] | None = None,
    ) -> None:
        self.period = period
        self.eval_function = eval_function
        self.save_weights = save_weights
        self.recorded = recorded

    def due(self, done: int) -> bool:
        """Whether an evaluation follows ``done`` completed epochs."""
        return done == self.trainer.max_epoch or (self.period > 0 and done % self.period == 0)

    def _put(self, results: Mapping[str, Mapping[str, float]]) -> None:
        storage = self.trainer.storage
        for dataset, metrics in results.items():
            for name, value in metrics.items():
                storage.put_scalar(f"{dataset}/{name}", value, smoothing=False)

    def _do_eval(self, done: int) -> None:
        try:
            results = self.eval_function(done)
        except Exception as e:
            path = self.save_weights(done) if self.save_weights is not None else None
            where = f"saved in {path}" if path else "not saved by this process"
            raise EvaluationError(
                f"evaluation after epoch {done} failed: {type(e).__name__}: {e}\n"
                f"The weights of epoch {done} are {where}: fix the cause, then run again with "
                f"--resume, which evaluates them before training on"
            ) from e
        comm.synchronize()
        self._put(results)

    def before_train(self) -> None:
        done = self.trainer.start_epoch
        if done == 0 or not self.due(done):
            return
        # The results belong to the last iteration of epoch ``done``, as in an uninterrupted run.
        self.trainer.storage.iter, self.trainer.storage.epoch = self.trainer.iter - 1, done - 1
        results = self.recorded(done) if self.recorded is not None else None
        if results is not None:
            self._put(results)
            return
        logger.info("The evaluation after epoch %d did not finish: evaluating now", done)
        self._do_eval(done)

    def after_epoch(self) -> None:
        done = self.trainer.epoch + 1
        if self.due(done):
            self._do_eval(done)


class BestCheckpointer(HookBase):
    """Saves ``model_best`` (weights only) whenever the scalar ``metric_name`` reaches a new best.

    Reads the value an evaluation put in the storage at this epoch's last iteration (register it
    after :class:`EvalHook`); epochs without an evaluation are skipped. At the start of a resumed
    run it also reads the evaluation of the checkpoint's epoch (which ran after that checkpoint
    was saved), without writing ``model_best`` again when it already holds that epoch.
    """

    def __init__(self, checkpointer: Checkpointer, metric_name: str) -> None:
        self.checkpointer = checkpointer
        self.metric_name = metric_name
        self.best_metric = -math.inf
        self.best_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])

    def _consider(self, done: int, catching_up: bool = False) -> None:
        latest = self.trainer.storage.latest().get(self.metric_name)
        if latest is None or latest[1] != self.trainer.storage.iter:
            return
        value = latest[0]
        if value > self.best_metric:
            self.best_metric, self.best_epoch = value, done
            if catching_up and _stored_epoch(self.checkpointer, "model_best") == done:
                return
            logger.info("New best %s %.2f at epoch %d", self.metric_name, value, self.best_epoch)
            self.checkpointer.save(
                "model_best",
                tag_last=False,
                model_only=True,
                epoch=self.best_epoch,
                iteration=self.trainer.iter,
            )

    def before_train(self) -> None:
        if self.trainer.start_epoch > 0:
            self._consider(self.trainer.start_epoch, catching_up=True)

    def after_epoch(self) -> None:
        self._consider(self.trainer.epoch + 1)


def _stored_epoch(checkpointer: Checkpointer, name: str) -> int | None:
    """The completed epochs that ``<save_dir>/<name>.pth`` stores, or None (absent, unreadable)."""
    path = os.path.join(checkpointer.save_dir, f"{name}.pth")
    if not os.path.isfile(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return completed_epochs(data)
    except Exception:  # noqa: BLE001 - an unreadable file is simply written again
        return None


class PeriodicWriter(HookBase):
    """Publishes the event storage every ``period`` iterations, at the end of every epoch and at
    the end of training (also a failed one), then closes the writers."""

    def __init__(self, writers: list[EventWriter], period: int = 20) -> None:
        self.writers = writers
        self.period = period

    def _write(self) -> None:
        for writer in self.writers:
            writer.write(self.trainer.storage)

    def before_train(self) -> None:
        fetch_period = getattr(self.trainer, "log_period", None)
        if fetch_period is not None and self.period % fetch_period != 0:
            raise ValueError(
                f"the writers' period ({self.period}) must be a multiple of the trainer's "
                f"log_period ({fetch_period}), the period it fetches loss values at: a write "
                f"in between would miss the losses of the iterations not fetched yet"
            )

    def after_step(self) -> None:
        if (self.trainer.iter + 1) % self.period == 0:
            self._write()

    def after_epoch(self) -> None:
        self._write()

    def after_train(self) -> None:
        try:
            self._write()
        finally:
            for writer in self.writers:
                writer.close()


class ProgressBar(HookBase):
    """A tqdm bar per epoch with the latest fetched total loss (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def before_epoch(self) -> None:
        from tqdm import tqdm

        if sys.stderr.isatty():
            self._bar = tqdm(
                total=self.trainer.iters_per_epoch,
                desc=f"epoch {self.trainer.epoch + 1}/{self.trainer.max_epoch}",
                leave=False,
                dynamic_ncols=True,
            )

    def after_step(self) -> None:
        if self._bar is not None:
            # The trainer fetches losses every LOG_PERIOD iterations: show the latest fetched.
            latest = self.trainer.storage.latest().get("total_loss")
            if latest is not None:
                self._bar.set_postfix(loss=f"{latest[0]:.3f}", refresh=False)
            self._bar.update(1)

    def after_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def after_train(self) -> None:
        self.after_epoch()


class TrainingPlan(HookBase):
    """Applies the training plan: each stage's loss weights and trainable parameters, and
    MODEL.FREEZE_LAYERS during the first SOLVER.FREEZE_ITERS iterations.

    Frozen parameters get ``requires_grad = False`` (no gradient, so no optimizer update, weight
    decay included) and every normalisation layer with running statistics inside a frozen part is
    kept in eval mode, so its statistics do not move either. The hook changes the trainer only
    through :meth:`SimpleTrainer.set_training_state`.
    """

    trainer: SimpleTrainer

    def __init__(
        self,
        model: nn.Module,
        plan: list[Stage],
        freeze_layers: Sequence[str] = (),
        freeze_iters: int = 0,
    ) -> None:
        self.model = model
        self.plan = plan
        self.freeze_layers = tuple(freeze_layers)
        self.freeze_iters = freeze_iters
        self.stage: Stage | None = None
        self._layers_frozen: bool | None = None
        names = [n for n, _ in model.named_parameters()]
        for stage in plan:
            for pattern in stage.trainable:
                if not any(re.match(pattern, n) for n in names):
                    raise ValueError(
                        f"SOLVER.STAGES[{stage.index}].TRAINABLE: {pattern!r} matches no "
                        f"parameter of the model (names look like {names[0]!r}, ..., "
                        f"{names[-1]!r})"
                    )
        modules = dict(model.named_modules())
        for layer in self.freeze_layers:
            if layer not in modules:
                children = list(dict(model.named_children()))
                raise ValueError(
                    f"MODEL.FREEZE_LAYERS: the model has no module '{layer}'; "
                    f"top-level modules: {children}"
                )

    def _trainable(self, name: str) -> bool:
        assert self.stage is not None
        stage_ok = not self.stage.trainable or any(re.match(p, name) for p in self.stage.trainable)
        frozen_layer = self._layers_frozen and any(
            name == layer or name.startswith(layer + ".") for layer in self.freeze_layers
        )
        return stage_ok and not frozen_layer

    def _apply(self) -> None:
        trainable = 0
        params = list(self.model.named_parameters())
        for name, param in params:
            param.requires_grad_(self._trainable(name))
            trainable += param.requires_grad
        frozen = []
        assert self.stage is not None
        for name, module in self.model.named_modules():
            if isinstance(module, _NormBase) and module.track_running_stats:
                own = list(module.parameters(recurse=False))
                is_trainable = (
                    any(p.requires_grad for p in own) if own else self._trainable(f"{name}.weight")
                )
                if not is_trainable:
                    frozen.append(module)
        self.trainer.set_training_state(self.stage.loss_weights, frozen)
        logger.info(
            "Trainable parameters: %d of %d tensors; %d normalisation layers frozen",
            trainable,
            len(params),
            len(frozen),
        )

    def before_epoch(self) -> None:
        stage = stage_at_epoch(self.plan, self.trainer.epoch)
        if stage is not self.stage:
            self.stage = stage
            if len(self.plan) > 1:
                logger.info("Entering %s", stage.describe())
            self._layers_frozen = self.trainer.iter < self.freeze_iters
            self._apply()

    def before_step(self) -> None:
        layers_frozen = self.trainer.iter < self.freeze_iters
        if layers_frozen != self._layers_frozen:
            self._layers_frozen = layers_frozen
            logger.info(
                "MODEL.FREEZE_LAYERS %s at iteration %d",
                "frozen" if layers_frozen else "released",
                self.trainer.iter,
            )
            self._apply()


class EMA(HookBase):
    """Updates an exponential moving average of the model's weights after every step.

    For an average of parameters and buffers by a ``multi_avg_fn`` (what the trainer builds) the
    update is ``AveragedModel.update_parameters``'s without its blocking copy of the step count
    to the GPU, which would make every step wait for the device.
    """

    def __init__(self, ema_model: torch.optim.swa_utils.AveragedModel, model: nn.Module) -> None:
        self.ema_model = ema_model
        self.model = model

    def after_step(self) -> None:
        ema = self.ema_model
        if ema.multi_avg_fn is None or not ema.use_buffers:
            ema.update_parameters(self.model)
            return
        averaged = [*ema.module.parameters(), *ema.module.buffers()]
        current = [*self.model.parameters(), *self.model.buffers()]
        with torch.no_grad():
            if int(ema.n_averaged) == 0:  # a host tensor: no device read
                for a, c in zip(averaged, current, strict=True):
                    a.detach().copy_(c.detach().to(a.device, non_blocking=True))
            else:
                groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
                for a, c in zip(averaged, current, strict=True):
                    group = groups.setdefault((a.device, a.dtype), ([], []))
                    group[0].append(a.detach())
                    group[1].append(c.detach().to(a.device, non_blocking=True))
                for (device, _), (a_list, c_list) in groups.items():
                    count = ema.n_averaged.to(device, non_blocking=True)
                    ema.multi_avg_fn(a_list, c_list, count)
        ema.n_averaged += 1
