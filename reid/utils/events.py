"""Scalars produced during training and the writers that publish them.

The writers: the console line, JSON lines (``metrics.json``) and TensorBoard.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from abc import ABC, abstractmethod
from collections import defaultdict, deque

import numpy as np

logger = logging.getLogger(__name__)


class EventStorage:
    """Holds the scalars of every iteration until writers publish them, and a window for smoothing.

    Raw values are kept for the last ``keep_iters`` iterations: writers must run at least that
    often.
    """

    def __init__(self, start_iter: int = 0, window: int = 20, keep_iters: int = 1000) -> None:
        self.iter = start_iter
        self.epoch = 0
        self._keep_iters = keep_iters
        self._history: dict[str, deque[tuple[int, float]]] = defaultdict(
            lambda: deque(maxlen=window)
        )
        self._latest: dict[str, tuple[float, int]] = {}
        self._smoothing: dict[str, bool] = {}
        self._unwritten: deque[tuple[int, int, str, float]] = deque()

    def put_scalar(
        self,
        name: str,
        value: float,
        smoothing: bool = True,
        iteration: int | None = None,
        epoch: int | None = None,
    ) -> None:
        """Record ``value`` at the current iteration, or at an earlier ``iteration`` (of
        ``epoch``) for values fetched later than they were computed (the trainer's losses)."""
        value = float(value)
        it = self.iter if iteration is None else iteration
        ep = self.epoch if epoch is None else epoch
        self._history[name].append((it, value))
        self._unwritten.append((it, ep, name, value))
        while self._unwritten and self._unwritten[0][0] <= self.iter - self._keep_iters:
            self._unwritten.popleft()
        self._latest[name] = (value, it)
        self._smoothing[name] = smoothing

    def put_scalars(self, smoothing: bool = True, **scalars: float) -> None:
        for name, value in scalars.items():
            self.put_scalar(name, value, smoothing=smoothing)

    def latest(self) -> dict[str, tuple[float, int]]:
        """name -> (value, iteration it was put at)."""
        return dict(self._latest)

    def values_since(self, last_iter: int) -> dict[int, dict[str, float]]:
        """iteration -> {name: raw value, "epoch": epoch}, for every scalar put after
        ``last_iter``."""
        out: dict[int, dict[str, float]] = defaultdict(dict)
        for it, epoch, name, value in self._unwritten:
            if it > last_iter:
                out[it][name] = value
                out[it]["epoch"] = epoch
        return dict(out)

    def median(self, name: str) -> float:
        return float(np.median([v for _, v in self._history[name]]))

    def smoothed(self) -> dict[str, tuple[float, int]]:
        """Latest values, with smoothable ones replaced by the median over the window."""
        return {
            name: (self.median(name) if self._smoothing[name] else value, it)
            for name, (value, it) in self._latest.items()
        }


class EventWriter(ABC):
    """Publishes the scalars of an :class:`EventStorage`; subclasses implement :meth:`write`."""

    @abstractmethod
    def write(self, storage: EventStorage) -> None:
        """Publish what ``storage`` holds."""

    def close(self) -> None:
        """Release files; writers without resources need not override it.

        Deliberately not abstract: the default releases nothing.
        """
        return None


class JSONWriter(EventWriter):
    """Appends one JSON object per iteration (every scalar put at it, unsmoothed) to ``path``,
    as detectron2's metrics.json."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")
        self._last_written = -1

    def write(self, storage: EventStorage) -> None:
        by_iter = storage.values_since(self._last_written)
        for it in sorted(by_iter):
            epoch = by_iter[it].pop("epoch")
            self._file.write(json.dumps({"iteration": it, "epoch": epoch, **by_iter[it]}) + "\n")
        if by_iter:
            self._last_written = max(by_iter)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorboardWriter(EventWriter):
    """Writes each scalar of every iteration since the last write to TensorBoard, in ``log_dir``."""

    def __init__(self, log_dir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir)
        self._last_written = -1

    def write(self, storage: EventStorage) -> None:
        by_iter = storage.values_since(self._last_written)
        for it in sorted(by_iter):
            by_iter[it].pop("epoch")
            for name, value in by_iter[it].items():
                self._writer.add_scalar(name, value, it)
        if by_iter:
            self._last_written = max(by_iter)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Console line: epoch, iteration, ETA, losses, LR and time per iteration."""

    def __init__(self, max_iter: int, iters_per_epoch: int) -> None:
        self._max_iter = max_iter
        self._iters_per_epoch = iters_per_epoch

    def write(self, storage: EventStorage) -> None:
        latest = storage.smoothed()
        iteration = storage.iter
        parts: list[str] = [
            f"epoch: {storage.epoch + 1}",
            f"iter: {iteration + 1 - storage.epoch * self._iters_per_epoch}"
            f"/{self._iters_per_epoch}",
        ]
        eta: str | None = None
        if "time" in latest:
            seconds = latest["time"][0] * (self._max_iter - iteration - 1)
            eta = str(datetime.timedelta(seconds=int(seconds)))
            parts.insert(0, f"eta: {eta}")
        parts += [f"{k}: {v:.4g}" for k, (v, _) in sorted(latest.items()) if "loss" in k]
        if "time" in latest:
            parts.append(f"time: {latest['time'][0]:.4f}")
        if "data_time" in latest:
            parts.append(f"data_time: {latest['data_time'][0]:.4f}")
        if "lr" in latest:
            parts.append(f"lr: {latest['lr'][0]:.3e}")
        logger.info("  ".join(parts))
