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
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from reid.structures import BatchKeys, EpochSampler, ReidModel
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


class SimpleTrainer(TrainerBase):
    """One optimisation step per iteration: forward, named losses, finiteness check, backward, step.

    Every epoch reseeds the RNGs from (seed, epoch) and the sampler from its epoch, so a run resumed
    at an epoch boundary draws the same batches and augmentations as an uninterrupted one.

    Args:
        model: The model; ``model.losses(outputs, targets, weights)`` gives the loss values.
        data_loader: Training batches; its sampler's ``set_epoch`` is called every epoch.
        optimizer: Steps the model's parameters.
        seed: The run's seed.
        train_module: What a step calls (default ``ModelWithLoss(model)``; DDP wraps that).
        options: Precision, clipping, accumulation, memory format.
        checkpointer: Named in the error of a non-finite loss (its last checkpoint is intact).
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        seed: int,
        train_module: nn.Module | None = None,
        options: StepOptions | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.train_module = train_module if train_module is not None else ModelWithLoss(model)
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.seed = seed
        self.options = options or StepOptions()
        self.checkpointer = checkpointer
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
        self._loss_weights = None if loss_weights is None else dict(loss_weights)
        self._frozen_modules = tuple(frozen_modules)

    @property
    def loss_weights(self) -> Mapping[str, float] | None:
        return self._loss_weights

    @property
    def frozen_modules(self) -> tuple[nn.Module, ...]:
        return self._frozen_modules

    def before_epoch(self) -> None:
        seed_all_rng(self.seed * 1000003 + self.epoch)
        sampler = self.data_loader.sampler
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(self.epoch)
        self._data_iter = iter(self.data_loader)
        super().before_epoch()

    def run_step(self) -> None:
        self.train_module.train()
        for module in self._frozen_modules:
            module.eval()
        start = time.perf_counter()
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start

        self.optimizer.zero_grad(set_to_none=True)
        totals = self._forward_backward(batch)
        self._optimizer_step()

        scalars = {"total_loss": sum(totals.values()), **totals, "data_time": data_time}
        scalars["time"] = time.perf_counter() - start
        for name, value in scalars.items():
            self.storage.put_scalar(name, value)

    def _forward_backward(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """Losses and gradients of the batch, in micro-batches when accumulating."""
        opts = self.options
        micro_batches = split_batch(batch, opts.accum_steps)
        totals: dict[str, float] = {}
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
                self.check_finite(loss_dict)
                loss = sum(loss_dict.values()) / len(micro_batches)
                scaler = opts.grad_scaler
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for name, value in loss_dict.items():
                totals[name] = totals.get(name, 0.0) + value.item() / len(micro_batches)
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

    def check_finite(self, loss_dict: Mapping[str, torch.Tensor]) -> None:
        """Stop on a NaN or infinite loss, naming the term; no checkpoint is written after it."""
        for name, value in loss_dict.items():
            if not torch.isfinite(value).all():
                last = self.checkpointer.last_saved if self.checkpointer is not None else None
                raise FloatingPointError(
                    f"Loss term '{name}' became {value.item()} at epoch {self.epoch + 1}, "
                    f"iteration {self.iter + 1}; training stopped. The last checkpoint is intact: "
                    f"{last or 'none written yet'}"
                )
