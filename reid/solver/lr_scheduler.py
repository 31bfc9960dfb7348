"""Learning-rate schedules: a warm-up times a main schedule, updated every iteration.

Let ``i`` be the 0-based index of the iteration about to run (the scheduler's ``last_epoch``
after ``i`` calls of ``step()``), ``E`` the iterations per epoch and ``base_g`` the starting LR
of param group ``g`` (BASE_LR times its LR factors, see ``optim.py``). Then

    lr_g(i) = base_g * warmup(i) * main(i)

warm-up, with ``f = WARMUP_FACTOR`` and ``W = WARMUP_ITERS`` or ``WARMUP_EPOCHS * E``
(one of them; 0 = no warm-up); ``warmup(i) = 1`` for ``i >= W``, else

    linear:    f + (1 - f) * i / W          (f at i = 0, rising to 1 at i = W)
    constant:  f
    exp:       f ** (1 - i / W)

The main schedule (SOLVER.SCHED) runs on one of two clocks (SOLVER.SCHED_CLOCK):

"after_warmup" (fastreid's, the default) - the main schedule advances once per epoch, at the end of
each epoch from the first one that ends past both the warm-up and DELAY_EPOCHS on: with
``e0 = max(ceil(W / E) - 1, DELAY_EPOCHS)``, epoch ``e`` runs at position ``k(e) = max(0, e - e0)``
of the main schedule (what fastreid's LRScheduler hook does with its WarmupLR and torch's
schedulers, stepped after every iteration of the warm-up and after every later epoch):

    MultiStepLR:        GAMMA ** (number of s in STEPS with s <= k(e))
                        (the LR drops at epoch e0 + s; STEPS are whole numbers >= 1)
    CosineAnnealingLR:  T = MAX_EPOCH - max(ceil(W / E), DELAY_EPOCHS), r = ETA_MIN_LR / BASE_LR;
                        r + (1 - r) * (1 + cos(pi * k(e) / T)) / 2, constant within an epoch

"from_start" (reid's own clock) - the main schedule is a function of the iteration counted from
iteration 0, whatever the warm-up:

    MultiStepLR:        GAMMA ** (number of s in STEPS with s * E <= i)
                        (STEPS are epochs completed before each decay)
    CosineAnnealingLR:  D = DELAY_EPOCHS * E, M = MAX_EPOCH * E, r = ETA_MIN_LR / BASE_LR;
                        1 for i < D,
                        else r + (1 - r) * (1 + cos(pi * min(1, (i - D) / (M - D)))) / 2
                        (BASE_LR reaches ETA_MIN_LR at i = M)

On both clocks every group keeps its ratio to BASE_LR (a group with another base LR ends at
ETA_MIN_LR * its base / BASE_LR; fastreid's torch scheduler sends every group to ETA_MIN_LR itself).
The warm-up factor multiplies the main schedule's factor, so on the "from_start" clock a step that
falls inside the warm-up lowers the warm-up's target (on the "after_warmup" clock none can).
Example, fastreid's bag of tricks on Market-1501: E = 12936 // 64 = 202, W = 2000, so e0 = 9 and
STEPS [40, 90] drop the LR at epochs 49 and 99 (0-based). The ratio paper, on the "from_start"
clock: BASE_LR 1e-3, WARMUP_FACTOR 0.01, WARMUP_EPOCHS 20, linear: 1e-5 at iteration 0, 1e-3 from
epoch 20 on.

The schedules are built from plain arguments (``LRSchedule(MultiStepSchedule([40, 90], 0.1,
iters_per_epoch=100), iters_per_epoch=100, max_iters=12000)``) or from SOLVER
(``LRSchedule(cfg, iters_per_epoch)``, which :func:`build_lr_schedule` wraps).
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.optim.lr_scheduler import LRScheduler
from yacs.config import CfgNode

from reid.config.schema import (
    ConfigArgs,
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
    declare,
)
from reid.utils.registry import Registry, RegistryKeyError

__all__ = [
    "LR_SCHEDULER_REGISTRY",
    "SCHEDULE_CONFIG",
    "WARMUP_REGISTRY",
    "CosineSchedule",
    "LRSchedule",
    "MainClock",
    "MainSchedule",
    "MultiStepSchedule",
    "Schedule",
    "WarmupLRScheduler",
    "build_lr_schedule",
    "describe_schedule",
    "main_clock",
    "merge_events",
    "schedule_table",
]

SCHEDULE_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        "Epochs and the LR schedule with warm-up (reid/solver/lr_scheduler.py).",
        {
            "MAX_EPOCH": Key(
                120,
                "Length of training in epochs (DATALOADER.EPOCH_LENGTH says what one epoch is).",
            ),
            "SCHED": Key("MultiStepLR", 'The main schedule: "MultiStepLR" or "CosineAnnealingLR".'),
            "SCHED_CLOCK": Key(
                "after_warmup",
                'What the main schedule counts (reid/solver/lr_scheduler.py): "after_warmup" '
                "(fastreid's) = epochs completed after the warm-up and DELAY_EPOCHS, the LR "
                'changing at epoch boundaries; "from_start" = iterations from the start of '
                "training, warm-up included (reid's Base-*.yml files use it).",
            ),
            "STEPS": Key(
                [30, 55],
                "MultiStepLR multiplies the LR by GAMMA after each of these epochs, counted as "
                'SCHED_CLOCK says ("after_warmup": main-schedule epochs, the first ending after '
                'the warm-up; "from_start": epochs from epoch 0).',
            ),
            "GAMMA": Key(0.1, "MultiStepLR's factor at each of STEPS."),
            "DELAY_EPOCHS": Key(
                0,
                "Epochs at the base LR before the main schedule starts (fastreid's cosine delay; "
                'on the "from_start" clock it delays only the cosine decay).',
            ),
            "ETA_MIN_LR": Key(
                1e-7,
                "LR the cosine decay reaches at the end of MAX_EPOCH, for BASE_LR (a group with "
                "another base LR ends at ETA_MIN_LR * its base / BASE_LR: the groups' LR ratios "
                "stay fixed).",
            ),
            "WARMUP_FACTOR": Key(
                0.1,
                "Start factor of the warm-up: the first iteration runs at WARMUP_FACTOR * "
                "BASE_LR, the LR reaches BASE_LR at the end of the warm-up (the ratio paper's "
                "1e-5 -> 1e-3: BASE_LR 1e-3, WARMUP_FACTOR 0.01). The warm-up multiplies the "
                "main schedule.",
            ),
            "WARMUP_ITERS": Key(
                1000, "Warm-up length in iterations; 0 = no warm-up (unless WARMUP_EPOCHS is set)."
            ),
            "WARMUP_EPOCHS": Key(
                0,
                "Warm-up length in epochs (converted with the iterations per epoch); set this or "
                "WARMUP_ITERS, not both (set WARMUP_ITERS to 0 with it).",
            ),
            "WARMUP_METHOD": Key("linear", 'The warm-up: "linear", "constant" or "exp".'),
        },
    )
)


WarmupFn = Callable[[int, int, float], float]

WARMUP_REGISTRY = Registry("WARMUP")
WARMUP_REGISTRY.__doc__ = """Warm-up factors ``fn(i, warmup_iters, warmup_factor)`` for
``i < warmup_iters``, by SOLVER.WARMUP_METHOD."""

LR_SCHEDULER_REGISTRY = Registry("LR_SCHEDULER")
LR_SCHEDULER_REGISTRY.__doc__ = """Main schedules (:class:`MainSchedule` subclasses built with
``cls(cfg, iters_per_epoch)``), by SOLVER.SCHED."""


@WARMUP_REGISTRY.register(name="linear")
def linear_warmup(i: int, warmup_iters: int, warmup_factor: float) -> float:
    """From ``warmup_factor`` at iteration 0 linearly up to 1 at ``warmup_iters``.

    >>> [linear_warmup(i, 4, 0.2) for i in range(4)]
    [0.2, 0.4, 0.6, 0.8]
    """
    alpha = i / warmup_iters
    return warmup_factor * (1.0 - alpha) + alpha


@WARMUP_REGISTRY.register(name="constant")
def constant_warmup(i: int, warmup_iters: int, warmup_factor: float) -> float:
    """``warmup_factor`` throughout the warm-up."""
    return warmup_factor


@WARMUP_REGISTRY.register(name="exp")
def exp_warmup(i: int, warmup_iters: int, warmup_factor: float) -> float:
    """From ``warmup_factor`` at iteration 0 geometrically up to 1 at ``warmup_iters``.

    >>> [exp_warmup(i, 2, 0.01) for i in range(2)]
    [0.01, 0.1]
    """
    return warmup_factor ** (1.0 - i / warmup_iters)


class Schedule(Protocol):
    """What the scheduler and ``describe_schedule`` need: ``LRSchedule`` or e.g. a staged plan."""

    iters_per_epoch: int
    max_iters: int

    def factor(self, i: int) -> float: ...

    def events(self) -> list[tuple[int, str]]: ...

    def summary(self) -> str: ...


def merge_events(events: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """Events sorted by iteration, the labels of one iteration joined by "; " (each label once).

    >>> merge_events([(5, "b"), (0, "start"), (5, "a"), (5, "b")])
    [(0, 'start'), (5, 'b; a')]
    """
    merged: dict[int, list[str]] = {}
    for i, label in sorted(events, key=lambda e: e[0]):
        labels = merged.setdefault(i, [])
        if label not in labels:
            labels.append(label)
    return [(i, "; ".join(labels)) for i, labels in sorted(merged.items())]


class MainSchedule(ABC):
    """The schedule after (and under) the warm-up: a factor of the group's base LR per iteration."""

    @abstractmethod
    def factor(self, i: int) -> float:
        """The LR factor at iteration ``i``."""

    @abstractmethod
    def events(self) -> list[tuple[int, str]]:
        """(iteration, label) of each point where the schedule changes course."""

    @abstractmethod
    def summary(self) -> str:
        """One line for the log."""


SCHED_CLOCKS = ("after_warmup", "from_start")


@dataclass(frozen=True)
class MainClock:
    """Where the main schedule's clock starts (see the module docstring).

    Attributes:
        after_warmup: fastreid's clock (SOLVER.SCHED_CLOCK "after_warmup").
        start_epoch: ``e0``: the main schedule's first step happens at the end of this epoch
            (0-based); 0 on the "from_start" clock.
        warmup_epochs: ``ceil(W / E)``, the epochs the warm-up touches.
    """

    after_warmup: bool
    start_epoch: int
    warmup_epochs: int


def main_clock(cfg: CfgNode, iters_per_epoch: int) -> MainClock:
    """The clock SOLVER.SCHED_CLOCK describes for ``iters_per_epoch`` iterations per epoch.

    >>> from reid.config import get_cfg
    >>> cfg = get_cfg()  # fastreid's defaults: WARMUP_ITERS 1000, DELAY_EPOCHS 0
    >>> main_clock(cfg, iters_per_epoch=202)
    MainClock(after_warmup=True, start_epoch=4, warmup_epochs=5)

    Raises:
        ConfigError: An unknown clock or a negative DELAY_EPOCHS.
    """
    _check_iters_per_epoch(iters_per_epoch)
    s = cfg.SOLVER
    key = SCHEDULE_CONFIG.full_key
    if s.SCHED_CLOCK not in SCHED_CLOCKS:
        raise ConfigError(
            f"{key('SCHED_CLOCK')} must be one of {list(SCHED_CLOCKS)}, got {s.SCHED_CLOCK!r}"
        )
    if s.DELAY_EPOCHS < 0:
        raise ConfigError(f"{key('DELAY_EPOCHS')} must be >= 0, got {s.DELAY_EPOCHS}")
    warmup_epochs = math.ceil(_warmup_iters(cfg, iters_per_epoch) / iters_per_epoch)
    if s.SCHED_CLOCK == "from_start":
        return MainClock(False, 0, warmup_epochs)
    return MainClock(True, max(warmup_epochs - 1, int(s.DELAY_EPOCHS), 0), warmup_epochs)


@LR_SCHEDULER_REGISTRY.register(name="MultiStepLR")
class MultiStepSchedule(MainSchedule):
    """``gamma ** (steps passed)``: the LR drops by ``gamma`` after each of ``step_epochs``.

    Args:
        step_epochs: Epochs after which the LR is multiplied by ``gamma``: whole numbers >= 0,
            increasing.
        gamma: The factor of each step, > 0.
        iters_per_epoch: Iterations per epoch.
        offset_epochs: Epochs before the schedule's clock starts: the drops happen after epochs
            ``offset_epochs + s`` (fastreid's clock counts the steps from the end of the warm-up).

    >>> schedule = MultiStepSchedule([1, 2], gamma=0.5, iters_per_epoch=10)
    >>> [schedule.factor(i) for i in (0, 9, 10, 19, 20)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    >>> MultiStepSchedule([40, 90], gamma=0.1, iters_per_epoch=202, offset_epochs=9).milestones
    [9898, 19998]
    """

    @configurable
    def __init__(
        self,
        step_epochs: Sequence[int],
        gamma: float,
        iters_per_epoch: int,
        offset_epochs: int = 0,
    ) -> None:
        steps = list(step_epochs)
        if any(int(s) != s or s < 0 for s in steps) or steps != sorted(steps):
            raise InvalidArgument(
                "step_epochs", f"must be increasing whole epochs >= 0, got {steps}"
            )
        if gamma <= 0:
            raise InvalidArgument("gamma", f"must be > 0, got {gamma}")
        if offset_epochs < 0:
            raise InvalidArgument("offset_epochs", f"must be >= 0, got {offset_epochs}")
        self.step_epochs = [int(s) for s in steps]
        self.offset_epochs = int(offset_epochs)
        self.milestones = [(s + self.offset_epochs) * iters_per_epoch for s in self.step_epochs]
        self.gamma = float(gamma)

    @classmethod
    def from_config(cls, cfg: CfgNode, iters_per_epoch: int) -> ConfigArgs:
        """SOLVER.STEPS and SOLVER.GAMMA, on the clock of SOLVER.SCHED_CLOCK.

        Raises:
            ConfigError: A step of 0 on the "after_warmup" clock (its first step ends an epoch).
        """
        key = SCHEDULE_CONFIG.full_key
        clock = main_clock(cfg, iters_per_epoch)
        steps = list(cfg.SOLVER.STEPS)
        if clock.after_warmup and any(s < 1 for s in steps):
            raise ConfigError(
                f"{key('STEPS')} {steps}: on the 'after_warmup' clock ({key('SCHED_CLOCK')}) "
                f"steps count the epochs completed after the warm-up and must be >= 1; count from "
                f"epoch 0 with {key('SCHED_CLOCK')} 'from_start'"
            )
        args = ConfigArgs().set("step_epochs", steps, key("STEPS"))
        args.set("gamma", cfg.SOLVER.GAMMA, key("GAMMA"))
        args.set("offset_epochs", clock.start_epoch)
        return args.set("iters_per_epoch", iters_per_epoch)

    def factor(self, i: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, i)

    def events(self) -> list[tuple[int, str]]:
        return [
            (m, f"step x{self.gamma:g} (epoch {s + self.offset_epochs})")
            for m, s in zip(self.milestones, self.step_epochs)
        ]

    def summary(self) -> str:
        at = [s + self.offset_epochs for s in self.step_epochs]
        if not self.offset_epochs:
            return f"MultiStepLR (x{self.gamma:g} at epochs {at})"
        return (
            f"MultiStepLR (x{self.gamma:g} after {self.step_epochs} epochs of the main schedule, "
            f"whose clock starts at the end of epoch {self.offset_epochs}: at epochs {at})"
        )


@LR_SCHEDULER_REGISTRY.register(name="CosineAnnealingLR")
class CosineSchedule(MainSchedule):
    """1 for ``delay_iters`` iterations, then a cosine down to ``min_factor`` at ``max_iters``.

    Args:
        delay_iters: Iterations at factor 1 before the decay, in [0, max_iters).
        max_iters: The iteration at which the factor reaches ``min_factor`` (and stays).
        min_factor: The final factor, in [0, 1].
        update_period: The factor changes every ``update_period`` iterations, at multiples of
            it (1 = every iteration; the iterations per epoch = at epoch starts, as fastreid's
            scheduler stepped once per epoch).

    >>> schedule = CosineSchedule(delay_iters=2, max_iters=6, min_factor=0.0)
    >>> [round(schedule.factor(i), 4) for i in range(7)]
    [1.0, 1.0, 1.0, 0.8536, 0.5, 0.1464, 0.0]
    >>> schedule = CosineSchedule(delay_iters=2, max_iters=6, min_factor=0.0, update_period=2)
    >>> [round(schedule.factor(i), 4) for i in range(7)]
    [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.0]
    """

    @configurable
    def __init__(
        self, delay_iters: int, max_iters: int, min_factor: float, update_period: int = 1
    ) -> None:
        if not 0 <= delay_iters < max_iters:
            raise InvalidArgument(
                "delay_iters", f"must lie in [0, max_iters = {max_iters}), got {delay_iters}"
            )
        if not 0.0 <= min_factor <= 1.0:
            raise InvalidArgument("min_factor", f"must lie in [0, 1], got {min_factor}")
        if update_period < 1:
            raise InvalidArgument("update_period", f"must be >= 1, got {update_period}")
        self.delay_iters = delay_iters
        self.max_iters = max_iters
        self.min_factor = float(min_factor)
        self.update_period = int(update_period)

    @classmethod
    def from_config(cls, cfg: CfgNode, iters_per_epoch: int) -> ConfigArgs:
        """From SOLVER.DELAY_EPOCHS, MAX_EPOCH and ETA_MIN_LR / BASE_LR, on the clock of
        SOLVER.SCHED_CLOCK (fastreid's: T = MAX_EPOCH - max(ceil(W / E), DELAY_EPOCHS) epochs
        from the end of epoch e0, the factor changing at epoch starts).

        Raises:
            ConfigError: The warm-up and DELAY_EPOCHS leave no epochs to decay over, or
                ETA_MIN_LR is not in [0, BASE_LR].
        """
        s = cfg.SOLVER
        key = SCHEDULE_CONFIG.full_key
        if not 0 <= s.ETA_MIN_LR <= s.BASE_LR:
            raise ConfigError(
                f"{key('ETA_MIN_LR')} ({s.ETA_MIN_LR}) must lie in [0, SOLVER.BASE_LR "
                f"({s.BASE_LR})]"
            )
        clock = main_clock(cfg, iters_per_epoch)
        args = ConfigArgs().set("min_factor", s.ETA_MIN_LR / s.BASE_LR)
        if not clock.after_warmup:
            if not s.DELAY_EPOCHS < s.MAX_EPOCH:
                raise ConfigError(
                    f"{key('DELAY_EPOCHS')} ({s.DELAY_EPOCHS}) must be smaller than "
                    f"{key('MAX_EPOCH')} ({s.MAX_EPOCH}) for the cosine decay to run"
                )
            args.set("delay_iters", s.DELAY_EPOCHS * iters_per_epoch)
            return args.set("max_iters", s.MAX_EPOCH * iters_per_epoch)
        decay_epochs = s.MAX_EPOCH - max(clock.warmup_epochs, s.DELAY_EPOCHS)
        if decay_epochs < 1:
            raise ConfigError(
                f"{key('MAX_EPOCH')} ({s.MAX_EPOCH}) leaves no epoch for the cosine decay after "
                f"the warm-up ({clock.warmup_epochs} epochs) and {key('DELAY_EPOCHS')} "
                f"({s.DELAY_EPOCHS})"
            )
        args.set("delay_iters", clock.start_epoch * iters_per_epoch)
        args.set("max_iters", (clock.start_epoch + decay_epochs) * iters_per_epoch)
        return args.set("update_period", iters_per_epoch)

    def factor(self, i: int) -> float:
        i -= i % self.update_period
        if i < self.delay_iters:
            return 1.0
        progress = min(1.0, (i - self.delay_iters) / (self.max_iters - self.delay_iters))
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )

    def events(self) -> list[tuple[int, str]]:
        mid = self.delay_iters + (self.max_iters - self.delay_iters) // 2
        return [(self.delay_iters, "cosine decay starts"), (mid, "cosine decay half-way")]

    def summary(self) -> str:
        every = (
            "" if self.update_period == 1 else f", updated every {self.update_period} iterations"
        )
        return (
            f"CosineAnnealingLR (constant for {self.delay_iters} iterations, then cosine down to "
            f"{self.min_factor:g} x base at iteration {self.max_iters}{every})"
        )


def _check_iters_per_epoch(iters_per_epoch: int) -> int:
    if (
        isinstance(iters_per_epoch, bool)
        or not isinstance(iters_per_epoch, int)
        or iters_per_epoch < 1
    ):
        raise InvalidArgument("iters_per_epoch", f"must be a positive int, got {iters_per_epoch!r}")
    return iters_per_epoch


class LRSchedule:
    """The LR factor at every iteration: ``warmup(i) * main(i)``; pure, no optimizer involved.

    Args:
        main: The main schedule.
        iters_per_epoch: Iterations per epoch (for the log).
        max_iters: Iterations of the whole run.
        warmup_method: A registered warm-up: "linear", "constant" or "exp".
        warmup_factor: The warm-up's start factor, >= 0 (> 0 for "exp").
        warmup_iters: Warm-up length in iterations; 0 = none.

    ``LRSchedule(cfg, iters_per_epoch)`` reads SOLVER (see the module docstring).

    >>> schedule = LRSchedule(
    ...     MultiStepSchedule([2], gamma=0.1, iters_per_epoch=2), iters_per_epoch=2, max_iters=6,
    ...     warmup_factor=0.5, warmup_iters=2)
    >>> [round(schedule.factor(i), 6) for i in range(6)]
    [0.5, 0.75, 1.0, 1.0, 0.1, 0.1]
    >>> schedule.events()
    [(0, 'start'), (2, 'warm-up done'), (4, 'step x0.1 (epoch 2)'), (5, 'last iteration')]
    """

    @configurable
    def __init__(
        self,
        main: MainSchedule,
        iters_per_epoch: int,
        max_iters: int,
        warmup_method: str = "linear",
        warmup_factor: float = 1.0,
        warmup_iters: int = 0,
    ) -> None:
        self.iters_per_epoch = _check_iters_per_epoch(iters_per_epoch)
        if max_iters < 1:
            raise InvalidArgument("max_iters", f"must be >= 1, got {max_iters}")
        if warmup_method not in WARMUP_REGISTRY:
            raise InvalidArgument(
                "warmup_method",
                f"must be a registered warm-up ({', '.join(WARMUP_REGISTRY.names())}), "
                f"got {warmup_method!r}",
            )
        if warmup_factor < 0 or (warmup_method == "exp" and warmup_factor == 0):
            raise InvalidArgument(
                "warmup_factor", f"must be >= 0 (> 0 for the exp warm-up), got {warmup_factor}"
            )
        if warmup_iters < 0:
            raise InvalidArgument("warmup_iters", f"must be >= 0, got {warmup_iters}")
        self.main = main
        self.max_iters = max_iters
        self.warmup_method = warmup_method
        self.warmup_fn: WarmupFn = WARMUP_REGISTRY.get(warmup_method)
        self.warmup_factor = float(warmup_factor)
        self.warmup_iters = int(warmup_iters)

    @classmethod
    def from_config(cls, cfg: CfgNode, iters_per_epoch: int) -> ConfigArgs:
        """The schedule cfg.SOLVER describes for ``iters_per_epoch`` iterations per epoch.

        Raises:
            ConfigError: A SOLVER key of the schedule is invalid; the message names it.
        """
        _check_iters_per_epoch(iters_per_epoch)
        s = cfg.SOLVER
        key = SCHEDULE_CONFIG.full_key
        if s.MAX_EPOCH < 1:
            raise ConfigError(f"{key('MAX_EPOCH')} must be >= 1, got {s.MAX_EPOCH}")
        try:
            main_cls = LR_SCHEDULER_REGISTRY.get(s.SCHED)
        except RegistryKeyError as e:
            raise ConfigError(f"{key('SCHED')}: {e}") from e
        args = ConfigArgs().set("main", main_cls(cfg, iters_per_epoch))
        args.set("iters_per_epoch", iters_per_epoch)
        args.set("max_iters", s.MAX_EPOCH * iters_per_epoch)
        args.set("warmup_method", s.WARMUP_METHOD, key("WARMUP_METHOD"))
        args.set("warmup_factor", s.WARMUP_FACTOR, key("WARMUP_FACTOR"))
        return args.set("warmup_iters", _warmup_iters(cfg, iters_per_epoch))

    def warmup(self, i: int) -> float:
        """The warm-up factor at iteration ``i`` (1 after the warm-up)."""
        if i >= self.warmup_iters:
            return 1.0
        return self.warmup_fn(i, self.warmup_iters, self.warmup_factor)

    def factor(self, i: int) -> float:
        """The LR factor at iteration ``i``."""
        return self.warmup(i) * self.main.factor(i)

    def events(self) -> list[tuple[int, str]]:
        """Iteration 0, the end of the warm-up, the main schedule's milestones, the last one."""
        events = [(0, "start")]
        if self.warmup_iters > 0:
            events.append((self.warmup_iters, "warm-up done"))
        events.extend(self.main.events())
        events.append((self.max_iters - 1, "last iteration"))
        return merge_events(events)

    def summary(self) -> str:
        """One line for the log."""
        warm = "no warm-up; "
        if self.warmup_iters > 0:
            epochs = self.warmup_iters / self.iters_per_epoch
            warm = (
                f"{self.warmup_method} warm-up from {self.warmup_factor:g} x base over "
                f"{self.warmup_iters} iterations ({epochs:g} epochs), times "
            )
        return (
            f"{warm}{self.main.summary()}; {self.iters_per_epoch} iterations/epoch, "
            f"{self.max_iters} in all"
        )


def _warmup_iters(cfg: CfgNode, iters_per_epoch: int) -> int:
    """SOLVER.WARMUP_ITERS, or SOLVER.WARMUP_EPOCHS in iterations (at most one of them is set)."""
    s = cfg.SOLVER
    if s.WARMUP_ITERS < 0 or s.WARMUP_EPOCHS < 0:
        raise ConfigError(
            f"SOLVER.WARMUP_ITERS ({s.WARMUP_ITERS}) and SOLVER.WARMUP_EPOCHS "
            f"({s.WARMUP_EPOCHS}) must be >= 0"
        )
    if s.WARMUP_ITERS > 0 and s.WARMUP_EPOCHS > 0:
        raise ConfigError(
            f"set SOLVER.WARMUP_ITERS ({s.WARMUP_ITERS}) or SOLVER.WARMUP_EPOCHS "
            f"({s.WARMUP_EPOCHS}), not both (set the other to 0; WARMUP_ITERS defaults to "
            f"fastreid's 1000)"
        )
    return int(s.WARMUP_ITERS) if s.WARMUP_ITERS > 0 else int(s.WARMUP_EPOCHS) * iters_per_epoch


def build_lr_schedule(cfg: CfgNode, iters_per_epoch: int) -> LRSchedule:
    """The LR factor per iteration described by cfg.SOLVER (see :meth:`LRSchedule.from_config`)."""
    return LRSchedule(cfg, iters_per_epoch)


class WarmupLRScheduler(LRScheduler):
    """Sets every group's LR to ``base_g * schedule.factor(i)``; ``step()`` once per iteration.

    Args:
        optimizer: The optimizer; its groups' current LRs are their base LRs.
        schedule: The factor per iteration (an :class:`LRSchedule`, a staged plan, ...).
        last_epoch: The iteration to start from, as torch's schedulers take it.

    ``state_dict()`` holds plain numbers only (loadable with ``torch.load(weights_only=True)``);
    ``load_state_dict()`` also writes the restored iteration's LRs into the optimizer.
    """

    _STATE_KEYS = ("last_epoch", "base_lrs", "_step_count", "_last_lr")

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1
    ) -> None:
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        factor = self.schedule.factor(self.last_epoch)
        return [float(base) * factor for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float | torch.Tensor]:
        return self.get_lr()

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": int(self.last_epoch),
            "base_lrs": [float(b) for b in self.base_lrs],
            "_step_count": int(self._step_count),
            "_last_lr": [float(lr) for lr in self._last_lr],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = [k for k in self._STATE_KEYS if k not in state_dict]
        if missing:
            raise KeyError(
                f"LR scheduler state is missing {missing}; expected the keys "
                f"{list(self._STATE_KEYS)}"
            )
        n_groups = len(self.optimizer.param_groups)
        if len(state_dict["base_lrs"]) != n_groups:
            raise ValueError(
                f"LR scheduler state has {len(state_dict['base_lrs'])} param groups, the "
                f"optimizer has {n_groups}"
            )
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(b) for b in state_dict["base_lrs"]]
        self._step_count = int(state_dict["_step_count"])
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs


def schedule_table(schedule: Schedule, base_lr: float) -> str:
    """A table of the factor and the LR (for ``base_lr``) at each event of ``schedule``.

    Args:
        schedule: The schedule; its events are the rows.
        base_lr: The LR the factors multiply (SOLVER.BASE_LR).

    The first two lines say what the schedule is; then one row per event:

    >>> schedule = LRSchedule(CosineSchedule(0, 4, 0.0), iters_per_epoch=2, max_iters=4)
    >>> for line in schedule_table(schedule, base_lr=0.1).splitlines()[2:]:
    ...     print(line)
     iteration     epoch       factor           lr  event
             0      0.00            1          0.1  start; cosine decay starts
             2      1.00          0.5         0.05  cosine decay half-way
             3      1.50     0.146447    0.0146447  last iteration
    """
    lines = [
        f"LR schedule: {schedule.summary()}.",
        f"Each param group runs at its base LR times the factor; shown for BASE_LR = {base_lr:g}.",
        f"{'iteration':>10} {'epoch':>9} {'factor':>12} {'lr':>12}  event",
    ]
    for i, label in schedule.events():
        if i >= schedule.max_iters:
            label += " (after MAX_EPOCH: never reached)"
        factor = schedule.factor(i)
        epoch = i / schedule.iters_per_epoch
        lines.append(f"{i:>10d} {epoch:>9.2f} {factor:>12.6g} {base_lr * factor:>12.6g}  {label}")
    return "\n".join(lines)


def describe_schedule(cfg: CfgNode, iters_per_epoch: int, schedule: Schedule | None = None) -> str:
    """:func:`schedule_table` of ``schedule`` (default: the one cfg.SOLVER describes) for
    SOLVER.BASE_LR: the LR at iteration 0, the end of the warm-up, each milestone of the main
    schedule and the last iteration."""
    if schedule is None:
        schedule = build_lr_schedule(cfg, iters_per_epoch)
    return schedule_table(schedule, cfg.SOLVER.BASE_LR)
