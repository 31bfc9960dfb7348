"""The epoch-based training loop and the hook protocol around it."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
import time
import weakref
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from reid.utils.checkpoint import unwrap_model
from reid.utils.env import seed_all_rng
from reid.utils.events import EventStorage

logger = logging.getLogger("reid")


class HookBase:
    """Called by the trainer around training, epochs and steps; ``self.trainer`` is set on register.

    Hooks with state that must survive a resume implement ``state_dict`` / ``load_state_dict``.
    """

    trainer: "TrainerBase"

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
        self._hooks: List[HookBase] = []
        self.epoch = 0
        self.iter = 0
        self.start_epoch = 0
        self.max_epoch = 0
        self.iters_per_epoch = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: List[Optional[HookBase]]) -> None:
        for h in hooks:
            if h is None:
                continue
            h.trainer = weakref.proxy(self)
            self._hooks.append(h)

    @property
    def hooks(self) -> List[HookBase]:
        return list(self._hooks)

    @property
    def max_iter(self) -> int:
        return self.max_epoch * self.iters_per_epoch

    def train(self, start_epoch: int, max_epoch: int, iters_per_epoch: int) -> None:
        self.start_epoch, self.max_epoch, self.iters_per_epoch = start_epoch, max_epoch, iters_per_epoch
        self.iter = start_epoch * iters_per_epoch
        logger.info("Starting training from epoch %d of %d (%d iterations per epoch)", start_epoch + 1, max_epoch, iters_per_epoch)
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

    def hooks_state_dict(self) -> Dict[str, dict]:
        return {type(h).__name__: h.state_dict() for h in self._hooks if hasattr(h, "state_dict")}

    def load_hooks_state_dict(self, state: Dict[str, dict]) -> None:
        for h in self._hooks:
            name = type(h).__name__
            if hasattr(h, "load_state_dict") and name in state:
                h.load_state_dict(state[name])


class SimpleTrainer(TrainerBase):
    """One optimisation step per iteration: forward, losses by name, finiteness check, backward, step.

    Every epoch reseeds the RNGs from (seed, epoch) and the sampler from its epoch, so a run resumed
    at an epoch boundary draws the same batches and augmentations as an uninterrupted one.
    """

    def __init__(self, model: nn.Module, data_loader: DataLoader, optimizer: torch.optim.Optimizer, seed: int) -> None:
        super().__init__()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.seed = seed
        self._data_iter: Iterator[dict]
        self.last_checkpoint: Optional[str] = None

    def before_epoch(self) -> None:
        seed_all_rng(self.seed * 1000003 + self.epoch)
        sampler = self.data_loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        self._data_iter = iter(self.data_loader)
        super().before_epoch()

    def run_step(self) -> None:
        self.model.train()
        start = time.perf_counter()
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start

        loss_dict = self.compute_losses(batch)
        losses = sum(loss_dict.values())
        self.check_finite(loss_dict)

        self.optimizer.zero_grad(set_to_none=True)
        losses.backward()
        self.optimizer.step()

        self.storage.put_scalars(total_loss=losses.item(), **{k: v.item() for k, v in loss_dict.items()})
        self.storage.put_scalars(data_time=data_time, time=time.perf_counter() - start)

    def compute_losses(self, batch: dict) -> Dict[str, torch.Tensor]:
        outputs = self.model(batch)
        targets = batch["targets"].to(next(unwrap_model(self.model).parameters()).device)
        return unwrap_model(self.model).losses(outputs, targets)

    def check_finite(self, loss_dict: Dict[str, torch.Tensor]) -> None:
        """Stop on a NaN or infinite loss, naming the term; no checkpoint is written after it."""
        for name, value in loss_dict.items():
            if not torch.isfinite(value).all():
                where = self.last_checkpoint or "none written yet"
                raise FloatingPointError(
                    f"Loss term '{name}' became {value.item()} at epoch {self.epoch + 1}, iteration {self.iter + 1}; "
                    f"training stopped. The last checkpoint is intact: {where}"
                )
