"""The epoch-based training loop and the hook protocol around it."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from reid.utils.env import seed_all_rng
from reid.utils.events import EventStorage

logger = logging.getLogger("reid")


class HookBase:
    """Called by the trainer around training, epochs and steps; ``self.trainer`` is set on register.

    Hooks with state that must survive a resume implement ``state_dict`` / ``load_state_dict``.
    """

    trainer: TrainerBase

    def before_train(self) -> None:
        """Called once before the first epoch."""

    def after_train(self) -> None:
        """Called once after the last epoch of a run that finished without error."""

    def before_epoch(self) -> None:
        """Called at the start of every epoch."""

    def after_epoch(self) -> None:
        """Called at the end of every epoch."""

    def before_step(self) -> None:
        """Called before every iteration."""

    def after_step(self) -> None:
        """Called after every iteration."""


class TrainerBase(ABC):
    """Runs epochs of ``iters_per_epoch`` iterations from ``start_epoch`` to ``max_epoch``, calling hooks.

    ``iter`` is the index of the current iteration; after an epoch it is the number completed so far.
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.epoch = 0
        self.iter = 0
        self.start_epoch = 0
        self.max_epoch = 0
        self.iters_per_epoch = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: list[HookBase | None]) -> None:
        for h in hooks:
            if h is None:
                continue
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    @property
    def hooks(self) -> list[HookBase]:
        return list(self._hooks)

    @property
    def max_iter(self) -> int:
        return self.max_epoch * self.iters_per_epoch

    def train(self, start_epoch: int, max_epoch: int, iters_per_epoch: int) -> None:
        self.start_epoch, self.max_epoch, self.iters_per_epoch = (
            start_epoch,
            max_epoch,
            iters_per_epoch,
        )
        self.iter = start_epoch * iters_per_epoch
        logger.info(
            "Starting training from epoch %d of %d (%d iterations per epoch)",
            start_epoch + 1,
            max_epoch,
            iters_per_epoch,
        )
        self.storage = EventStorage(self.iter)
        self.before_train()
        for self.epoch in range(start_epoch, max_epoch):
            self.storage.epoch = self.epoch
            self.before_epoch()
            for _ in range(iters_per_epoch):
                self.storage.iter = self.iter
                self.before_step()
                self.run_step()
                self.after_step()
                self.iter += 1
            self.after_epoch()
        self.after_train()

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

    def hooks_state_dict(self) -> dict[str, dict]:
        return {type(h).__name__: h.state_dict() for h in self._hooks if hasattr(h, "state_dict")}

    def load_hooks_state_dict(self, state: dict[str, dict]) -> None:
        for h in self._hooks:
            name = type(h).__name__
            if hasattr(h, "load_state_dict") and name in state:
                h.load_state_dict(state[name])


class ModelWithLoss(nn.Module):
    """Forward and losses in one module call.

    The trainer (and DistributedDataParallel) call this wrapper, so every parameter the losses use
    (centers, proxies, the MPN meta-learner) is used inside one forward and synchronised.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: dict, loss_weights: Mapping[str, float] | None = None
    ) -> dict[str, torch.Tensor]:
        outputs = self.model(batch)
        targets = batch["targets"].to(next(self.model.parameters()).device)
        return self.model.losses(outputs, targets, loss_weights)


@dataclass
class StepOptions:
    """How one optimisation step runs (the defaults are a plain full-precision step)."""

    amp_dtype: torch.dtype | None = None  # autocast dtype, None = off
    grad_scaler: torch.amp.GradScaler | None = None  # for float16 autocast
    clip_gradients: Callable[[list[torch.Tensor]], object] | None = None
    accum_steps: int = 1  # micro-batches per step, gradients accumulated
    channels_last: bool = False


def split_batch(batch: dict, parts: int) -> list[dict]:
    """Cut a batch into ``parts`` contiguous micro-batches (identity-complete for PK batches when
    each part is a multiple of K, which the trainer checks)."""
    if parts == 1:
        return [batch]
    size = len(batch["targets"])
    if size % parts != 0:
        raise ValueError(
            f"a batch of {size} images cannot be split into {parts} equal micro-batches"
        )
    step = size // parts
    return [{k: v[i * step : (i + 1) * step] for k, v in batch.items()} for i in range(parts)]


class SimpleTrainer(TrainerBase):
    """One optimisation step per iteration: forward + losses by name, finiteness check, backward, step.

    Every epoch reseeds the RNGs from (seed, epoch) and the sampler from its epoch, so a run resumed
    at an epoch boundary draws the same batches and augmentations as an uninterrupted one.
    ``loss_weights`` (None = the config's SCALEs) and ``frozen_modules`` (kept in eval mode) are
    set by the training-plan hook.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        seed: int,
        train_module: nn.Module | None = None,
        options: StepOptions | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.train_module = train_module if train_module is not None else ModelWithLoss(model)
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.seed = seed
        self.options = options or StepOptions()
        self.loss_weights: Mapping[str, float] | None = None
        self.frozen_modules: list[nn.Module] = []
        self.last_checkpoint: str | None = None
        self._data_iter: Iterator[dict]

    def before_epoch(self) -> None:
        seed_all_rng(self.seed * 1000003 + self.epoch)
        sampler = self.data_loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        self._data_iter = iter(self.data_loader)
        super().before_epoch()

    def run_step(self) -> None:
        opts = self.options
        self.train_module.train()
        for module in self.frozen_modules:
            module.eval()
        start = time.perf_counter()
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start

        self.optimizer.zero_grad(set_to_none=True)
        micro_batches = split_batch(batch, opts.accum_steps)
        totals: dict[str, float] = {}
        for k, micro in enumerate(micro_batches):
            if opts.channels_last:
                micro["images"] = micro["images"].contiguous(memory_format=torch.channels_last)
            sync = k == len(micro_batches) - 1 or not hasattr(self.train_module, "no_sync")
            with contextlib.nullcontext() if sync else self.train_module.no_sync():
                with self._autocast():
                    loss_dict = self.train_module(micro, self.loss_weights)
                self.check_finite(loss_dict)
                loss = sum(loss_dict.values()) / len(micro_batches)
                (opts.grad_scaler.scale(loss) if opts.grad_scaler is not None else loss).backward()
            for name, value in loss_dict.items():
                totals[name] = totals.get(name, 0.0) + value.item() / len(micro_batches)

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

        self.storage.put_scalars(total_loss=sum(totals.values()), **totals)
        self.storage.put_scalars(data_time=data_time, time=time.perf_counter() - start)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.options.amp_dtype is None:
            return contextlib.nullcontext()
        device = next(self.model.parameters()).device
        return torch.autocast(device_type=device.type, dtype=self.options.amp_dtype)

    def check_finite(self, loss_dict: dict[str, torch.Tensor]) -> None:
        """Stop on a NaN or infinite loss, naming the term; no checkpoint is written after it."""
        for name, value in loss_dict.items():
            if not torch.isfinite(value).all():
                where = self.last_checkpoint or "none written yet"
                raise FloatingPointError(
                    f"Loss term '{name}' became {value.item()} at epoch {self.epoch + 1}, iteration {self.iter + 1}; "
                    f"training stopped. The last checkpoint is intact: {where}"
                )
