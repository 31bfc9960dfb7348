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

main schedule (SOLVER.SCHED), both clocks counted from iteration 0 whatever the warm-up:

    MultiStepLR:        GAMMA ** (number of s in STEPS with s * E <= i)
                        (STEPS are epochs completed before each decay)
    CosineAnnealingLR:  D = DELAY_EPOCHS * E, M = MAX_EPOCH * E, r = ETA_MIN_LR / BASE_LR;
                        1 for i < D, else r + (1 - r) * (1 + cos(pi * min(1, (i - D) / (M - D)))) / 2
                        (BASE_LR reaches ETA_MIN_LR at i = M; every group keeps its ratio to BASE_LR)

The warm-up factor multiplies the main schedule's factor (fastreid's convention), so a step that
falls inside the warm-up lowers the warm-up's target. Example, the ratio paper: BASE_LR 1e-3,
WARMUP_FACTOR 0.01, WARMUP_EPOCHS 20, linear: 1e-5 at iteration 0, 1e-3 from epoch 20 on.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch.optim.lr_scheduler import LRScheduler
from yacs.config import CfgNode

from reid.config import ConfigError
from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

SCHEDULE_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        "Epochs and the LR schedule with warm-up.",
        {
            "MAX_EPOCH": Key(
                120,
                ("Length of training in epochs (DATALOADER.EPOCH_LENGTH says what one epoch is)."),
            ),
            "SCHED": Key(
                "MultiStepLR",
                '"MultiStepLR" or "CosineAnnealingLR".',
            ),
            "STEPS": Key(
                [40, 90],
                ("Epochs (counted from epoch 0) at which MultiStepLR multiplies the LR by GAMMA."),
            ),
            "GAMMA": Key(
                0.1,
                "MultiStepLR's factor at each of SOLVER.STEPS.",
            ),
            "DELAY_EPOCHS": Key(
                0,
                "Constant-LR epochs before the cosine decay starts.",
            ),
            "ETA_MIN_LR": Key(
                1e-7,
                (
                    "LR the cosine decay reaches at the end of MAX_EPOCH (for BASE_LR; a group "
                    "with another base LR ends at ETA_MIN_LR * its base / BASE_LR, so the groups'"
                    " LR ratios stay fixed)."
                ),
            ),
            "WARMUP_FACTOR": Key(
                0.1,
                (
                    "Warm-up: the LR goes from WARMUP_FACTOR * BASE_LR to BASE_LR over "
                    "WARMUP_ITERS iterations. Start factor of the warm-up: the first iteration "
                    "runs at WARMUP_FACTOR * BASE_LR (the ratio paper's 1e-5 -> 1e-3: BASE_LR "
                    "1e-3, WARMUP_FACTOR 0.01). The factor multiplies the main schedule."
                ),
            ),
            "WARMUP_ITERS": Key(
                0,
                ("Warm-up length in iterations; 0 = no warm-up (unless WARMUP_EPOCHS is set)."),
            ),
            "WARMUP_EPOCHS": Key(
                0,
                (
                    "Warm-up length in epochs (converted with the iterations per epoch); set this"
                    " or WARMUP_ITERS, not both."
                ),
            ),
            "WARMUP_METHOD": Key(
                "linear",
                '"linear", "constant" or "exp".',
            ),
        },
    )
)


WarmupFn = Callable[[int, int, float], float]

WARMUP_REGISTRY = Registry("WARMUP")
WARMUP_REGISTRY.__doc__ = """Warm-up factors ``fn(i, warmup_iters, warmup_factor)`` for ``i < warmup_iters``, by SOLVER.WARMUP_METHOD."""

LR_SCHEDULER_REGISTRY = Registry("LR_SCHEDULER")
LR_SCHEDULER_REGISTRY.__doc__ = """Main schedules (``MainSchedule`` subclasses), by SOLVER.SCHED."""


@WARMUP_REGISTRY.register(name="linear")
def linear_warmup(i: int, warmup_iters: int, warmup_factor: float) -> float:
    alpha = i / warmup_iters
    return warmup_factor * (1.0 - alpha) + alpha


@WARMUP_REGISTRY.register(name="constant")
def constant_warmup(i: int, warmup_iters: int, warmup_factor: float) -> float:
    return warmup_factor


@WARMUP_REGISTRY.register(name="exp")
def exp_warmup(i: int, warmup_iters: int, warmup_factor: float) -> float:
    return warmup_factor ** (1.0 - i / warmup_iters)


class Schedule(Protocol):
    """What the scheduler and ``describe_schedule`` need: ``LRSchedule`` or e.g. a staged plan."""

    iters_per_epoch: int
    max_iters: int

    def factor(self, i: int) -> float: ...

    def events(self) -> list[tuple[int, str]]: ...

    def summary(self) -> str: ...


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


@LR_SCHEDULER_REGISTRY.register(name="MultiStepLR")
class MultiStepSchedule(MainSchedule):
    def __init__(self, step_epochs: Sequence[int], gamma: float, iters_per_epoch: int) -> None:
        self.step_epochs = [int(s) for s in step_epochs]
        self.milestones = [s * iters_per_epoch for s in self.step_epochs]
        self.gamma = float(gamma)

    @classmethod
    def from_config(cls, cfg: CfgNode, iters_per_epoch: int) -> MultiStepSchedule:
        steps, gamma = list(cfg.SOLVER.STEPS), cfg.SOLVER.GAMMA
        if any(int(s) != s or s < 0 for s in steps) or steps != sorted(steps):
            raise ConfigError(f"SOLVER.STEPS must be increasing whole epochs >= 0, got {steps}")
        if gamma <= 0:
            raise ConfigError(f"SOLVER.GAMMA must be > 0, got {gamma}")
        return cls(steps, gamma, iters_per_epoch)

    def factor(self, i: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, i)

    def events(self) -> list[tuple[int, str]]:
        return [
            (m, f"step x{self.gamma:g} (epoch {s})")
            for m, s in zip(self.milestones, self.step_epochs)
        ]

    def summary(self) -> str:
        return f"MultiStepLR (x{self.gamma:g} at epochs {self.step_epochs})"


@LR_SCHEDULER_REGISTRY.register(name="CosineAnnealingLR")
class CosineSchedule(MainSchedule):
    def __init__(self, delay_iters: int, max_iters: int, min_factor: float) -> None:
        if not 0 <= delay_iters < max_iters:
            raise ValueError(
                f"CosineSchedule needs 0 <= delay_iters < max_iters, got {delay_iters} and {max_iters}"
            )
        self.delay_iters = delay_iters
        self.max_iters = max_iters
        self.min_factor = float(min_factor)

    @classmethod
    def from_config(cls, cfg: CfgNode, iters_per_epoch: int) -> CosineSchedule:
        s = cfg.SOLVER
        if not 0 <= s.DELAY_EPOCHS < s.MAX_EPOCH:
            raise ConfigError(
                f"SOLVER.DELAY_EPOCHS ({s.DELAY_EPOCHS}) must be >= 0 and smaller than SOLVER.MAX_EPOCH "
                f"({s.MAX_EPOCH}) for the cosine decay to run"
            )
        if not 0 <= s.ETA_MIN_LR <= s.BASE_LR:
            raise ConfigError(
                f"SOLVER.ETA_MIN_LR ({s.ETA_MIN_LR}) must lie in [0, SOLVER.BASE_LR ({s.BASE_LR})]"
            )
        return cls(
            s.DELAY_EPOCHS * iters_per_epoch,
            s.MAX_EPOCH * iters_per_epoch,
            s.ETA_MIN_LR / s.BASE_LR,
        )

    def factor(self, i: int) -> float:
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
        return (
            f"CosineAnnealingLR (constant for {self.delay_iters} iterations, then cosine down to "
            f"{self.min_factor:g} x base at iteration {self.max_iters})"
        )


class LRSchedule:
    """The LR factor at every iteration: ``warmup(i) * main(i)``; pure, no optimizer involved."""

    def __init__(
        self,
        main: MainSchedule,
        iters_per_epoch: int,
        max_iters: int,
        warmup_method: str = "linear",
        warmup_factor: float = 1.0,
        warmup_iters: int = 0,
    ) -> None:
        self.main = main
        self.iters_per_epoch = iters_per_epoch
        self.max_iters = max_iters
        self.warmup_method = warmup_method
        self.warmup_fn: WarmupFn = WARMUP_REGISTRY.get(warmup_method)
        self.warmup_factor = float(warmup_factor)
        self.warmup_iters = int(warmup_iters)

    def warmup(self, i: int) -> float:
        if i >= self.warmup_iters:
            return 1.0
        return self.warmup_fn(i, self.warmup_iters, self.warmup_factor)

    def factor(self, i: int) -> float:
        return self.warmup(i) * self.main.factor(i)

    def events(self) -> list[tuple[int, str]]:
        """Iteration 0, the end of the warm-up, the main schedule's milestones, the last iteration."""
        events = [(0, "start")]
        if self.warmup_iters > 0:
            events.append((self.warmup_iters, "warm-up done"))
        events.extend(self.main.events())
        events.append((self.max_iters - 1, "last iteration"))
        merged: dict[int, list[str]] = {}
        for i, label in sorted(events, key=lambda e: e[0]):
            merged.setdefault(i, []).append(label)
        return [(i, "; ".join(labels)) for i, labels in sorted(merged.items())]

    def summary(self) -> str:
        if self.warmup_iters > 0:
            warm = (
                f"{self.warmup_method} warm-up from {self.warmup_factor:g} x base over {self.warmup_iters} "
                f"iterations ({self.warmup_iters / self.iters_per_epoch:g} epochs), times "
            )
        else:
            warm = "no warm-up; "
        return f"{warm}{self.main.summary()}; {self.iters_per_epoch} iterations/epoch, {self.max_iters} in all"


def _warmup_iters(cfg: CfgNode, iters_per_epoch: int) -> int:
    s = cfg.SOLVER
    if s.WARMUP_ITERS < 0 or s.WARMUP_EPOCHS < 0:
        raise ConfigError(
            f"SOLVER.WARMUP_ITERS ({s.WARMUP_ITERS}) and SOLVER.WARMUP_EPOCHS ({s.WARMUP_EPOCHS}) must be >= 0"
        )
    if s.WARMUP_ITERS > 0 and s.WARMUP_EPOCHS > 0:
        raise ConfigError(
            f"set SOLVER.WARMUP_ITERS ({s.WARMUP_ITERS}) or SOLVER.WARMUP_EPOCHS ({s.WARMUP_EPOCHS}), not both "
            f"(set the other to 0)"
        )
    return int(s.WARMUP_ITERS) if s.WARMUP_ITERS > 0 else int(s.WARMUP_EPOCHS) * iters_per_epoch


def build_lr_schedule(cfg: CfgNode, iters_per_epoch: int) -> LRSchedule:
    """The LR factor per iteration described by cfg.SOLVER (see the module docstring)."""
    if (
        isinstance(iters_per_epoch, bool)
        or not isinstance(iters_per_epoch, int)
        or iters_per_epoch < 1
    ):
        raise ValueError(f"iters_per_epoch must be a positive int, got {iters_per_epoch!r}")
    s = cfg.SOLVER
    try:
        main_cls = LR_SCHEDULER_REGISTRY.get(s.SCHED)
    except RegistryKeyError as e:
        raise ConfigError(f"SOLVER.SCHED: {e}") from e
    if s.WARMUP_METHOD not in WARMUP_REGISTRY:
        raise ConfigError(
            f"SOLVER.WARMUP_METHOD: unknown '{s.WARMUP_METHOD}'; registered: {', '.join(WARMUP_REGISTRY.names())}"
        )
    if s.WARMUP_FACTOR < 0 or (s.WARMUP_METHOD == "exp" and s.WARMUP_FACTOR == 0):
        raise ConfigError(
            f"SOLVER.WARMUP_FACTOR must be >= 0 (> 0 for the exp warm-up), got {s.WARMUP_FACTOR}"
        )
    if s.MAX_EPOCH < 1:
        raise ConfigError(f"SOLVER.MAX_EPOCH must be >= 1, got {s.MAX_EPOCH}")
    return LRSchedule(
        main=main_cls.from_config(cfg, iters_per_epoch),
        iters_per_epoch=iters_per_epoch,
        max_iters=s.MAX_EPOCH * iters_per_epoch,
        warmup_method=s.WARMUP_METHOD,
        warmup_factor=s.WARMUP_FACTOR,
        warmup_iters=_warmup_iters(cfg, iters_per_epoch),
    )


class WarmupLRScheduler(LRScheduler):
    """Sets every group's LR to ``base_g * schedule.factor(i)``; ``step()`` once per iteration.

    ``state_dict()`` holds plain numbers only (loadable with ``torch.load(weights_only=True)``);
    ``load_state_dict()`` also writes the restored iteration's LRs into the optimizer.
    """

    _STATE_KEYS = ("last_epoch", "base_lrs", "_step_count", "_last_lr")

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1
    ) -> None:
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    @property
    def iteration(self) -> int:
        """Index of the iteration the current LRs are for."""
        return self.last_epoch

    def get_lr(self) -> list[float]:
        factor = self.schedule.factor(self.last_epoch)
        return [float(base) * factor for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
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
                f"LR scheduler state is missing {missing}; expected the keys {list(self._STATE_KEYS)}"
            )
        n_groups = len(self.optimizer.param_groups)
        if len(state_dict["base_lrs"]) != n_groups:
            raise ValueError(
                f"LR scheduler state has {len(state_dict['base_lrs'])} param groups, the optimizer has {n_groups}"
            )
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(b) for b in state_dict["base_lrs"]]
        self._step_count = int(state_dict["_step_count"])
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs


def build_lr_scheduler(
    cfg: CfgNode, optimizer: torch.optim.Optimizer, iters_per_epoch: int
) -> WarmupLRScheduler:
    """A per-iteration scheduler for ``optimizer``; sets the iteration-0 LRs on construction."""
    return WarmupLRScheduler(optimizer, build_lr_schedule(cfg, iters_per_epoch))


def describe_schedule(cfg: CfgNode, iters_per_epoch: int, schedule: Schedule | None = None) -> str:
    """A table of the effective LR (for BASE_LR) at iteration 0, the end of the warm-up, each
    milestone of the main schedule and the last iteration; ``schedule`` defaults to the one
    cfg.SOLVER describes."""
    if schedule is None:
        schedule = build_lr_schedule(cfg, iters_per_epoch)
    base = cfg.SOLVER.BASE_LR
    lines = [
        f"LR schedule: {schedule.summary()}.",
        f"Each param group runs at its base LR times the factor; shown for BASE_LR = {base:g}.",
        f"{'iteration':>10} {'epoch':>9} {'factor':>12} {'lr':>12}  event",
    ]
    for i, label in schedule.events():
        if i >= schedule.max_iters:
            label += " (after MAX_EPOCH: never reached)"
        factor = schedule.factor(i)
        lines.append(
            f"{i:>10d} {i / iters_per_epoch:>9.2f} {factor:>12.6g} {base * factor:>12.6g}  {label}"
        )
    return "\n".join(lines)
