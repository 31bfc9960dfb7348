"""The epoch-based training loop and the hook protocol around it.

Contracts:
- Hooks run in registration order around training, epochs and steps; ``after_train`` runs in a
  ``finally``, also when training failed (``trainer.error`` is then set and the error logged).
- A hook with state that a resume needs returns it from ``state_dict``; the trainer saves the
  states keyed by the hook's class name, so two hooks of one class cannot be registered.
- The training plan changes what a step computes only through
  :meth:`SimpleTrainer.set_training_state` (loss weights, frozen normalisation layers).
- ``trainer.epoch`` is the 0-based index of the running epoch; files, logs and results count
  completed epochs from 1 (``model_0005.pth`` is written after the fifth epoch).
- A step never waits for the device: its loss values stay there and are fetched in one transfer
  every ``log_period`` iterations, at the end of every epoch and of training, each before the
  hooks of that point run. The fetch records every iteration's values in the storage (at the
  iteration that computed them) and runs the :class:`LossGuard`: a non-finite or diverged loss
  stops training there, so no hook (checkpoint, best model, evaluation) runs after such a step.
  A hook that writes weights at another point calls ``trainer.fetch_losses()`` first; after a
  failure ``trainer.loss_failure`` holds the error (also when another error stopped training).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable, declare
from reid.structures import BatchKeys, EpochSampler, ReidModel
from reid.utils import comm
from reid.utils.checkpoint import Checkpointer
from reid.utils.env import seed_all_rng
from reid.utils.events import EventStorage

logger = logging.getLogger(__name__)


class HookBase:
    """Called by the trainer around training, epochs and steps; ``self.trainer`` is set on register.

    Hooks with state that must survive a resume override ``state_dict`` / ``load_state_dict``.
    """

    trainer: TrainerBase

    def before_train(self) -> None:
        """Called once before the first epoch."""

    def after_train(self) -> None:
        """Called once after training, also when it failed (then ``trainer.error`` is set)."""

    def before_epoch(self) -> None:
        """Called at the start of every epoch."""

    def after_epoch(self) -> None:
        """Called at the end of every epoch."""

    def before_step(self) -> None:
        """Called before every iteration."""

    def after_step(self) -> None:
        """Called after every iteration."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as if uninterrupted (empty: nothing)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class TrainerBase(ABC):
    """Runs epochs of ``iters_per_epoch`` iterations, ``start_epoch`` to ``max_epoch``, with hooks.

    ``iter`` is the index of the current iteration; after an epoch it is the number completed so
    far. ``error`` is the exception that stopped training, if any.
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.epoch = 0
        self.iter = 0
        self.start_epoch = 0
        self.max_epoch = 0
        self.iters_per_epoch = 0
        self.error: BaseException | None = None
        self.storage: EventStorage

    def register_hooks(self, hooks: Sequence[HookBase | None]) -> None:
        """Append ``hooks`` (None entries are skipped); a second hook of one class is an error."""
        for h in hooks:
            if h is None:
                continue
            name = type(h).__name__
            if any(type(other).__name__ == name for other in self._hooks):
                raise ValueError(
                    f"a hook of class {name} is already registered; hook states are saved by "
                    f"class name, so each class can be registered once"
                )
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    @property
    def hooks(self) -> list[HookBase]:
        return list(self._hooks)

    @property
    def max_iter(self) -> int:
        return self.max_epoch * self.iters_per_epoch

    def train(self, start_epoch: int, max_epoch: int, iters_per_epoch: int) -> None:
        """Run epochs ``start_epoch`` .. ``max_epoch - 1`` (0-based indices)."""
        self.start_epoch, self.max_epoch, self.epoch = start_epoch, max_epoch, start_epoch
        self.iters_per_epoch = iters_per_epoch
        self.iter = start_epoch * iters_per_epoch
        self.error = None
        logger.info(
            "Starting training from epoch %d of %d (%d iterations per epoch)",
            start_epoch + 1,
            max_epoch,
            iters_per_epoch,
        )
        self.storage = EventStorage(self.iter)
        try:
            self.before_train()
            for self.epoch in range(start_epoch, max_epoch):
                self._run_epoch()
        except BaseException as e:
            self.error = e
            logger.error(
                "Training stopped in epoch %d at iteration %d: %s: %s",
                self.epoch + 1,
                self.iter + 1,
                type(e).__name__,
                e,
            )
            raise
        finally:
            self.after_train()

    def _run_epoch(self) -> None:
        self.storage.epoch = self.epoch
        self.before_epoch()
        for _ in range(self.iters_per_epoch):
            self.storage.iter = self.iter
            self.before_step()
            self.run_step()
            self.after_step()
            self.iter += 1
        self.after_epoch()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        for h in self._hooks:
            h.after_train()

    def before_epoch(self) -> None:
        for h in self._hooks:
            h.before_epoch()

    def after_epoch(self) -> None:
        for h in self._hooks:
            h.after_epoch()

    def before_step(self) -> None:
        for h in self._hooks:
            h.before_step()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    @abstractmethod
    def run_step(self) -> None:
        """One training iteration."""

    def hooks_state_dict(self) -> dict[str, dict[str, Any]]:
        """The non-empty hook states, keyed by hook class name."""
        states = {type(h).__name__: h.state_dict() for h in self._hooks}
        return {name: state for name, state in states.items() if state}

    def load_hooks_state_dict(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        for h in self._hooks:
            name = type(h).__name__
            if name in states:
                h.load_state_dict(states[name])


class ModelWithLoss(nn.Module):
    """Forward and losses in one module call.

    The trainer (and DistributedDataParallel) call this wrapper, so every parameter the losses use
    (centers, proxies, the MPN meta-learner) is used inside one forward and synchronised.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: Mapping[str, Any], loss_weights: Mapping[str, float] | None = None
    ) -> dict[str, torch.Tensor]:
        outputs = self.model(batch)
        targets = batch[BatchKeys.TARGETS].to(next(self.model.parameters()).device)
        return cast(ReidModel, self.model).losses(outputs, targets, loss_weights)


@dataclass
class StepOptions:
    """How one optimisation step runs (the defaults are a plain full-precision step)."""

    amp_dtype: torch.dtype | None = None  # autocast dtype, None = off
    grad_scaler: torch.amp.GradScaler | None = None  # for float16 autocast
    clip_gradients: Callable[[list[torch.Tensor]], object] | None = None
    accum_steps: int = 1  # micro-batches per step, gradients accumulated
    channels_last: bool = False


def split_batch(batch: Mapping[str, Any], parts: int) -> list[dict[str, Any]]:
    """Cut a batch into ``parts`` contiguous micro-batches (identity-complete for PK batches when
    each part is a multiple of K, which the trainer checks)."""
    if parts == 1:
        return [dict(batch)]
    size = len(batch[BatchKeys.TARGETS])
    if size % parts != 0:
        raise ValueError(
            f"a batch of {size} images cannot be split into {parts} equal micro-batches"
        )
    step = size // parts
    return [{k: v[i * step : (i + 1) * step] for k, v in batch.items()} for i in range(parts)]


DIVERGENCE_CONFIG = declare(
    ConfigBlock(
        "SOLVER.DIVERGENCE",
        (
            "The divergence guard: a loss term far above its early value stops training "
            "(non-finite loss values always do)."
        ),
        {
            "FACTOR": Key(
                100.0,
                (
                    "Stop when a loss term exceeds FACTOR x its early value; 0 = off. A term's "
                    "early value is the median of its first EARLY_ITERS positive values since "
                    "training started or the training plan last changed the loss weights (of the "
                    "values seen so far until there are EARLY_ITERS); each later value is checked "
                    "against it. Terms without a positive value are not checked."
                ),
            ),
            "EARLY_ITERS": Key(
                10,
                "How many of a term's first positive values its early value is the median of.",
            ),
        },
    )
)


class LossDivergedError(FloatingPointError):
    """A finite loss term rose above the divergence guard's limit."""


class LossGuard:
    """Stops training on a non-finite loss term, and (with ``factor`` > 0) on a diverged one.

    A term diverged when its value exceeds ``factor`` times its early value: the median of its
    first ``early_iters`` positive values since training started or the loss weights last changed
    (while fewer were seen, the median of those seen). Each value is checked against the early
    values before it, then joins them while there are fewer than ``early_iters``.

    Args:
        factor: The limit as a multiple of the early value; 0 turns the divergence check off.
        early_iters: How many positive values form the early value (>= 1).

    >>> guard = LossGuard(factor=10.0, early_iters=2)
    >>> guard.check({"loss": 2.0}), guard.check({"loss": 4.0}), guard.check({"loss": 29.0})
    (None, None, None)
    >>> guard.check({"loss": 31.0})
    ('loss', 31.0, 3.0)
    """

    config_block = DIVERGENCE_CONFIG

    @configurable
    def __init__(self, factor: float = 100.0, early_iters: int = 10) -> None:
        if factor != 0 and not factor > 1:
            raise InvalidArgument("factor", f"must be 0 (off) or > 1, got {factor}")
        if int(early_iters) != early_iters or early_iters < 1:
            raise InvalidArgument("early_iters", f"must be a whole number >= 1, got {early_iters}")
        self.factor = float(factor)
        self.early_iters = int(early_iters)
        self._early: dict[str, list[float]] = {}
        self._weights: dict[str, float] | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> ConfigArgs:
        """``factor`` and ``early_iters`` from SOLVER.DIVERGENCE."""
        return DIVERGENCE_CONFIG.arguments(cfg)

    def early_value(self, name: str) -> float | None:
        """The early value of term ``name`` (None before its first positive value)."""
        values = self._early.get(name)
        return statistics.median(values) if values else None

    def set_weights(self, weights: Mapping[str, float] | None) -> None:
        """The loss weights of the following steps; other weights than the early values were
        computed with start them again."""
        new = None if weights is None else dict(weights)
        if new != self._weights:
            if self._early:
                logger.info("Loss weights changed: the divergence guard relearns early values")
            self._early = {}
            self._weights = new

    def check(self, values: Mapping[str, float]) -> tuple[str, float, float | None] | None:
        """Check one iteration's loss values.

        Args:
            values: Loss term name -> its value at the iteration.

        Returns:
            None if all is well, else (term, value, early value): early value None means the
            value is not finite.
        """
        for name, value in values.items():
            if not math.isfinite(value):
                return name, value, None
        for name, value in values.items():
            early = self.early_value(name)
            if self.factor and early is not None and value > self.factor * early:
                return name, value, early
            window = self._early.setdefault(name, [])
            if value > 0 and len(window) < self.early_iters:
                window.append(value)
        return None

    def state_dict(self) -> dict[str, Any]:
        """The early values and the weights they were computed with (a resume continues them)."""
        return {"early": {k: list(v) for k, v in self._early.items()}, "weights": self._weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._early = {str(k): [float(x) for x in v] for k, v in state["early"].items()}
        weights = state["weights"]
        self._weights = None if weights is None else {str(k): float(v) for k, v in weights.items()}


@dataclass
class _PendingLosses:
    """One step's loss values, still on the device."""

    iteration: int
    epoch: int
    names: tuple[str, ...]
    values: torch.Tensor  # 1-D float32 (float64 for float64 losses), one value per name


class SimpleTrainer(TrainerBase):
    """One optimisation step per iteration: forward, named losses, backward, step; no host read.

    Every epoch reseeds the RNGs from (seed, epoch) and the sampler from its epoch, so a run resumed
    at an epoch boundary draws the same batches and augmentations as an uninterrupted one.

    The loss values of a step stay on the device; :meth:`fetch_losses` reads all pending ones in
    one transfer every ``log_period`` iterations and at the end of every epoch (before the hooks
    of that point), records them in the storage at the iterations that computed them and checks
    them with the loss guard. A non-finite or diverged value stops training there, naming the
    term and the iteration it was computed at; a few more steps may have run meanwhile, but no
    hook has, so no checkpoint or best model is written after such a step.

    Args:
        model: The model; ``model.losses(outputs, targets, weights)`` gives the loss values.
        data_loader: Training batches; its sampler's ``set_epoch`` is called every epoch.
        optimizer: Steps the model's parameters.
        seed: The run's seed.
        train_module: What a step calls (default ``ModelWithLoss(model)``; DDP and
            ``torch.compile`` wrap that).
        options: Precision, clipping, accumulation, memory format.
        checkpointer: Named in the error of a non-finite loss (its last checkpoint is intact).
        log_period: Fetch the loss values every this many iterations (the writers' period).
        loss_guard: Checks the fetched values (default: non-finite values only).
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable[Any],
        optimizer: torch.optim.Optimizer,
        seed: int,
        train_module: nn.Module | None = None,
        options: StepOptions | None = None,
        checkpointer: Checkpointer | None = None,
        log_period: int = 20,
        loss_guard: LossGuard | None = None,
    ) -> None:
        super().__init__()
        if log_period < 1:
            raise InvalidArgument("log_period", f"must be >= 1, got {log_period}")
        self.model = model
        self.train_module = train_module if train_module is not None else ModelWithLoss(model)
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.seed = seed
        self.options = options or StepOptions()
        self.checkpointer = checkpointer
        self.log_period = log_period
        self.loss_guard = loss_guard if loss_guard is not None else LossGuard(factor=0)
        self.loss_failure: FloatingPointError | None = None
        self._pending: list[_PendingLosses] = []
        self._loss_weights: Mapping[str, float] | None = None
        self._frozen_modules: tuple[nn.Module, ...] = ()
        self._data_iter: Iterator[Any]

    def set_training_state(
        self, loss_weights: Mapping[str, float] | None, frozen_modules: Sequence[nn.Module] = ()
    ) -> None:
        """The one place where the training plan changes what a step computes.

        Args:
            loss_weights: Registered loss name -> weight for the following steps (None = the
                configured SCALEs; a loss left out is not computed).
            frozen_modules: Modules kept in eval mode during the steps (frozen normalisation
                layers, whose running statistics must not move).
        """
        self.fetch_losses()  # values computed with the old weights are checked against them
        self._loss_weights = None if loss_weights is None else dict(loss_weights)
        self._frozen_modules = tuple(frozen_modules)
        self.loss_guard.set_weights(self._loss_weights)

    @property
    def loss_weights(self) -> Mapping[str, float] | None:
        return self._loss_weights

    @property
    def frozen_modules(self) -> tuple[nn.Module, ...]:
        return self._frozen_modules

    def hooks_state_dict(self) -> dict[str, dict[str, Any]]:
        """The hooks' states and the loss guard's (key ``LossGuard``)."""
        return {**super().hooks_state_dict(), "LossGuard": self.loss_guard.state_dict()}

    def load_hooks_state_dict(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        super().load_hooks_state_dict(states)
        if "LossGuard" in states:
            self.loss_guard.load_state_dict(states["LossGuard"])

    def before_epoch(self) -> None:
        seed_all_rng(self.seed * 1000003 + self.epoch)
        sampler = getattr(self.data_loader, "sampler", None)
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(self.epoch)
        self._data_iter = iter(self.data_loader)
        super().before_epoch()

    def after_step(self) -> None:
        if (self.iter + 1) % self.log_period == 0:
            self.fetch_losses()
        super().after_step()

    def after_epoch(self) -> None:
        self.fetch_losses()
        super().after_epoch()

    def after_train(self) -> None:
        try:
            self.fetch_losses(agree=False)  # another process may be gone: no collective
        except FloatingPointError as e:
            if self.error is None:
                raise
            logger.error("Before that failure: %s", e)
        finally:
            super().after_train()

    def run_step(self) -> None:
        self.train_module.train()
        for module in self._frozen_modules:
            module.eval()
        start = time.perf_counter()
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start

        self.optimizer.zero_grad(set_to_none=True)
        losses = self._forward_backward(batch)
        self._optimizer_step()

        wide = any(v.dtype == torch.float64 for v in losses.values())
        dtype = torch.float64 if wide else torch.float32  # float16/bfloat16 values widen
        values = torch.stack([v.to(dtype) for v in losses.values()])
        self._pending.append(_PendingLosses(self.iter, self.epoch, tuple(losses), values))
        self.storage.put_scalar("data_time", data_time)
        self.storage.put_scalar("time", time.perf_counter() - start)

    def fetch_losses(self, agree: bool = True) -> None:
        """Read the pending loss values in one transfer, record them and check them.

        Every pending iteration's values go into the storage (``total_loss`` and one scalar per
        term) at the iteration that computed them; then the loss guard checks them in order.
        With several processes (and ``agree``), all of them stop when any one's guard does.

        Raises:
            FloatingPointError: A term was not finite (:class:`LossDivergedError`: diverged),
                naming it, the epoch and iteration it was computed at and the last checkpoint;
                or another process's guard stopped training.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        flat = torch.cat([p.values for p in pending]).tolist()  # the one host read
        offset = 0
        failure: FloatingPointError | None = None
        for p in pending:
            values = dict(zip(p.names, flat[offset : offset + len(p.names)], strict=True))
            offset += len(p.names)
            for name, value in {"total_loss": math.fsum(values.values()), **values}.items():
                self.storage.put_scalar(name, value, iteration=p.iteration, epoch=p.epoch)
            if failure is None:
                found = self.loss_guard.check(values)
                if found is not None:
                    failure = self._loss_error(*found, iteration=p.iteration, epoch=p.epoch)
        if agree and comm.get_world_size() > 1:
            mine = torch.tensor([int(failure is not None)])
            flags = torch.cat(comm.all_gather(mine)).tolist()
            if failure is None and any(flags):
                stopped = [rank for rank, flag in enumerate(flags) if flag]
                failure = FloatingPointError(
                    f"the loss guard of process(es) {stopped} stopped training (their log names "
                    f"the loss term and the iteration); this process stops with them"
                )
        if failure is not None:
            self.loss_failure = failure
            raise failure

    def _loss_error(
        self, name: str, value: float, early: float | None, iteration: int, epoch: int
    ) -> FloatingPointError:
        where = f"at epoch {epoch + 1}, iteration {iteration + 1}"
        if self.checkpointer is not None and not self.checkpointer.save_to_disk:
            tail = "training stopped. The checkpoints of the main process are intact"
        else:
            last = self.checkpointer.last_saved if self.checkpointer is not None else None
            tail = f"training stopped. The last checkpoint is intact: {last or 'none written yet'}"
        if early is None:
            return FloatingPointError(f"Loss term '{name}' became {value} {where}; {tail}")
        return LossDivergedError(
            f"Loss term '{name}' diverged {where}: {value:.6g} is above "
            f"SOLVER.DIVERGENCE.FACTOR ({self.loss_guard.factor:g}) x its early value "
            f"{early:.6g}; {tail}"
        )

    def _forward_backward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Losses and gradients of the batch, in micro-batches when accumulating; returns the
        detached loss values averaged over the micro-batches, on the device."""
        opts = self.options
        micro_batches = split_batch(batch, opts.accum_steps)
        totals: dict[str, torch.Tensor] = {}
        for k, micro in enumerate(micro_batches):
            if opts.channels_last:
                images = micro[BatchKeys.IMAGES]
                micro[BatchKeys.IMAGES] = images.contiguous(memory_format=torch.channels_last)
            last = k == len(micro_batches) - 1
            sync = last or not hasattr(self.train_module, "no_sync")
            no_sync = cast(Any, self.train_module).no_sync if not sync else None
            with contextlib.nullcontext() if no_sync is None else no_sync():
                with self._autocast():
                    loss_dict = self.train_module(micro, self._loss_weights)
                if not loss_dict:
                    raise ValueError(
                        "the model computed no loss: every loss has weight 0 or is left out "
                        "of the loss weights"
                    )
                loss = sum(loss_dict.values()) / len(micro_batches)
                scaler = opts.grad_scaler
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for name, value in loss_dict.items():
                part = value.detach() / len(micro_batches)
                totals[name] = part if name not in totals else totals[name] + part
        return totals

    def _optimizer_step(self) -> None:
        opts = self.options
        if opts.grad_scaler is not None:
            opts.grad_scaler.unscale_(self.optimizer)
        if opts.clip_gradients is not None:
            opts.clip_gradients(
                [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            )
        if opts.grad_scaler is not None:
            opts.grad_scaler.step(self.optimizer)
            opts.grad_scaler.update()
        else:
            self.optimizer.step()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.amp_dtype is None:
            return contextlib.nullcontext()
        device = next(self.model.parameters()).device
        return torch.autocast(device_type=device.type, dtype=self.options.amp_dtype)
