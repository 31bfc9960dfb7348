"""Training plans: several stages in one run, each with its epochs, losses, trainable parts and LR.

A stage is one item of the list SOLVER.STAGES:

    SOLVER:
      MAX_EPOCH: 600                       # must equal the sum of the stages' EPOCHS
      STAGES:
        - NAME: pn                         # optional, for the log
          EPOCHS: 360
          LOSSES: {CrossEntropyLoss: 1.0, PNTupletLoss: 1.0}
        - NAME: meta
          EPOCHS: 120
          LOSSES: {CrossEntropyLoss: 1.0, MPNTupletLoss: 1.0}
          TRAINABLE: ['heads\\.classifier\\.', 'loss_set\\.losses\\.MPNTupletLoss\\.']
        - NAME: finetune
          EPOCHS: 120
          LOSSES: {CrossEntropyLoss: 1.0, MPNTupletLoss: 1.0, TripletLoss: 1.0}
          SOLVER: {BASE_LR: 0.00035, SCHED: CosineAnnealingLR}

- LOSSES: registered loss name -> weight; every name must be in MODEL.LOSSES.NAME (that list
  builds the losses, so their parameters exist from the start). Left out: the SCALEs of the config.
- TRAINABLE: regular expressions matched (``re.match``, i.e. from the start) against parameter
  names of the model (``backbone.layer4.0.conv1.weight``, ``heads.classifier.weight``,
  ``loss_set.losses.MPNTupletLoss.phi.0.weight``); every other parameter is frozen and the
  normalisation layers of frozen parts keep their running statistics. Left out: everything trains.
- SOLVER: schedule keys (BASE_LR, SCHED, SCHED_CLOCK, STEPS, GAMMA, WARMUP_*, DELAY_EPOCHS,
  ETA_MIN_LR) for a schedule of the stage's own, counted from its first epoch (MAX_EPOCH = the
  stage's EPOCHS).
  Left out: the run's global schedule simply continues through the stage.
With SOLVER.STAGES empty the run is one stage covering MAX_EPOCH with the config as it is.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yacs.config import CfgNode

from reid.config.config import merge_dict_into
from reid.config.schema import ConfigBlock, ConfigError, Key, configurable, declare

from .lr_scheduler import Schedule, build_lr_schedule, merge_events

__all__ = [
    "STAGES_CONFIG",
    "Stage",
    "StagedSchedule",
    "build_training_plan",
    "stage_at_epoch",
    "stage_config",
]

STAGES_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        "Training plans of several stages (reid/solver/stages.py).",
        {
            "STAGES": Key(
                [],
                "Training stages of one run (see reid/solver/stages.py): a list of mappings with "
                "EPOCHS, LOSSES (name -> weight), TRAINABLE (parameter-name regexes) and SOLVER "
                "(schedule overrides); empty = one stage over MAX_EPOCH.",
            ),
        },
    )
)


STAGE_KEYS = ("NAME", "EPOCHS", "LOSSES", "TRAINABLE", "SOLVER")
SCHEDULE_KEYS = (
    "BASE_LR",
    "SCHED",
    "SCHED_CLOCK",
    "STEPS",
    "GAMMA",
    "DELAY_EPOCHS",
    "ETA_MIN_LR",
    "WARMUP_FACTOR",
    "WARMUP_ITERS",
    "WARMUP_EPOCHS",
    "WARMUP_METHOD",
)


@dataclass(frozen=True)
class Stage:
    """One stage of a training plan.

    Args:
        index: 0-based position in the plan.
        name: For the log.
        start_epoch: Its first epoch (0-based).
        epochs: How many epochs it lasts.
        loss_weights: Registered loss name -> weight; None = the config's SCALEs.
        trainable: Regular expressions of the parameter names that train; empty = all.
        solver_overrides: Schedule keys of the stage's own schedule; empty = the run's schedule
            continues through the stage.
    """

    index: int
    name: str
    start_epoch: int
    epochs: int
    loss_weights: dict[str, float] | None = None
    trainable: tuple[str, ...] = ()
    solver_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def end_epoch(self) -> int:
        """The epoch after its last one."""
        return self.start_epoch + self.epochs

    def describe(self) -> str:
        """One line for the log.

        >>> print(Stage(1, "meta", start_epoch=360, epochs=120, trainable=("heads",)).describe())
        stage 2 'meta': epochs 361-480; losses: config SCALEs; trainable: heads; LR: global schedule
        """
        losses = (
            "config SCALEs"
            if self.loss_weights is None
            else ", ".join(f"{k} x{v:g}" for k, v in self.loss_weights.items())
        )
        trainable = "everything" if not self.trainable else ", ".join(self.trainable)
        lr = (
            "global schedule"
            if not self.solver_overrides
            else f"own schedule {self.solver_overrides}"
        )
        return (
            f"stage {self.index + 1} '{self.name}': epochs {self.start_epoch + 1}-{self.end_epoch}"
            f"; losses: {losses}; trainable: {trainable}; LR: {lr}"
        )


def _check_keys(where: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def _stage_epochs(where: str, raw: Mapping[str, Any]) -> int:
    epochs = raw.get("EPOCHS")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"{where}.EPOCHS must be a whole number >= 1, got {epochs!r}")
    return epochs


def _stage_losses(cfg: CfgNode, where: str, raw: Mapping[str, Any]) -> dict[str, float] | None:
    loss_weights = raw.get("LOSSES")
    if loss_weights is None:
        return None
    if not isinstance(loss_weights, Mapping) or not loss_weights:
        raise ConfigError(f"{where}.LOSSES must map loss names to weights, got {loss_weights!r}")
    built = list(cfg.MODEL.LOSSES.NAME)
    for name, weight in loss_weights.items():
        if name not in built:
            raise ConfigError(
                f"{where}.LOSSES names '{name}', which MODEL.LOSSES.NAME does not build; "
                f"list every loss of every stage there (now: {built})"
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{where}.LOSSES.{name} must be a number, got {weight!r}")
    return {k: float(v) for k, v in loss_weights.items()}


def _stage_trainable(where: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    trainable = raw.get("TRAINABLE", [])
    if isinstance(trainable, str) or not isinstance(trainable, (list, tuple)):
        raise ConfigError(
            f"{where}.TRAINABLE must be a list of regular expressions, got {trainable!r}"
        )
    for pattern in trainable:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise ConfigError(
                f"{where}.TRAINABLE: {pattern!r} is not a valid regular expression: {e}"
            ) from e
    return tuple(trainable)


def _stage_overrides(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    overrides = raw.get("SOLVER", {}) or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}.SOLVER must be a mapping of schedule keys, got {overrides!r}")
    _check_keys(f"{where}.SOLVER", overrides, SCHEDULE_KEYS)
    return dict(overrides)


def _parse_stage(cfg: CfgNode, index: int, raw: Any, start_epoch: int) -> Stage:
    """SOLVER.STAGES[index], checked, starting at ``start_epoch``."""
    where = f"SOLVER.STAGES[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: a stage must be a mapping with keys {', '.join(STAGE_KEYS)}, got {raw!r}"
        )
    _check_keys(where, raw, STAGE_KEYS)
    stage = Stage(
        index=index,
        name=str(raw.get("NAME", f"stage{index + 1}")),
        start_epoch=start_epoch,
        epochs=_stage_epochs(where, raw),
        loss_weights=_stage_losses(cfg, where, raw),
        trainable=_stage_trainable(where, raw),
        solver_overrides=_stage_overrides(where, raw),
    )
    if stage.solver_overrides:
        stage_config(cfg, stage)  # validates the override values
    return stage


def build_training_plan(cfg: CfgNode) -> list[Stage]:
    """The stages of SOLVER.STAGES, checked; one stage over MAX_EPOCH when there are none.

    Raises:
        ConfigError: A stage is malformed, or the stages' EPOCHS do not add up to MAX_EPOCH.
    """
    raw_stages = list(cfg.SOLVER.STAGES)
    if not raw_stages:
        return [Stage(index=0, name="train", start_epoch=0, epochs=cfg.SOLVER.MAX_EPOCH)]
    plan: list[Stage] = []
    start = 0
    for index, raw in enumerate(raw_stages):
        stage = _parse_stage(cfg, index, raw, start)
        plan.append(stage)
        start = stage.end_epoch
    if start != cfg.SOLVER.MAX_EPOCH:
        raise ConfigError(
            f"SOLVER.MAX_EPOCH ({cfg.SOLVER.MAX_EPOCH}) must equal the sum of the stages' EPOCHS "
            f"({' + '.join(str(s.epochs) for s in plan)} = {start})"
        )
    return plan


def stage_at_epoch(plan: Sequence[Stage], epoch: int) -> Stage:
    """The stage that epoch ``epoch`` (0-based) belongs to; epochs past the end stay in the last.

    >>> plan = [Stage(0, "a", start_epoch=0, epochs=2), Stage(1, "b", start_epoch=2, epochs=3)]
    >>> [stage_at_epoch(plan, epoch).name for epoch in (0, 1, 2, 4, 9)]
    ['a', 'a', 'b', 'b', 'b']
    """
    starts = [s.start_epoch for s in plan]
    return plan[max(0, bisect.bisect_right(starts, epoch) - 1)]


def stage_config(cfg: CfgNode, stage: Stage) -> CfgNode:
    """``cfg`` with the stage's SOLVER overrides applied and MAX_EPOCH = the stage's epochs."""
    out = cfg.clone()
    out.defrost()
    merge_dict_into(
        out, {"SOLVER": dict(stage.solver_overrides)}, source=f"SOLVER.STAGES[{stage.index}].SOLVER"
    )
    out.SOLVER.MAX_EPOCH = stage.epochs
    out.SOLVER.STAGES = []
    out.freeze()
    return out


@dataclass(frozen=True)
class _Part:
    """The schedule of one stage: ``ratio * schedule.factor(i - offset)`` from iteration
    ``start`` on."""

    stage: Stage
    start: int
    schedule: Schedule
    ratio: float
    offset: int
    own: bool


class StagedSchedule:
    """The LR factor per iteration across the stages of a plan (the interface of ``LRSchedule``).

    A stage without a schedule of its own uses the run's schedule at the global iteration; a
    stage with one uses it at the iteration counted from the stage's start, scaled by the
    stage's BASE_LR relative to the run's (each param group keeps its LR factors).

    Args:
        plan: The stages, in order.
        schedule: The run's schedule; its ``iters_per_epoch`` and ``max_iters`` are the plan's.
        stage_schedules: Stage index -> (the stage's own schedule, its LR relative to the
            run's), for the stages that have one.

    ``StagedSchedule(cfg, plan, iters_per_epoch)`` builds the schedules from SOLVER and the
    stages' SOLVER overrides.
    """

    @configurable
    def __init__(
        self,
        plan: Sequence[Stage],
        schedule: Schedule,
        stage_schedules: Mapping[int, tuple[Schedule, float]] | None = None,
    ) -> None:
        own = dict(stage_schedules or {})
        self.iters_per_epoch = schedule.iters_per_epoch
        self.max_iters = schedule.max_iters
        self._parts: list[_Part] = []
        for stage in plan:
            start = stage.start_epoch * self.iters_per_epoch
            if stage.index in own:
                stage_schedule, ratio = own[stage.index]
                self._parts.append(_Part(stage, start, stage_schedule, ratio, start, own=True))
            else:
                self._parts.append(_Part(stage, start, schedule, 1.0, 0, own=False))
        self._starts = [part.start for part in self._parts]

    @classmethod
    def from_config(
        cls, cfg: CfgNode, plan: Sequence[Stage], iters_per_epoch: int
    ) -> dict[str, Any]:
        """The run's schedule from SOLVER, and one per stage with SOLVER overrides."""
        schedule = build_lr_schedule(cfg, iters_per_epoch)
        stage_schedules: dict[int, tuple[Schedule, float]] = {}
        for stage in plan:
            if stage.solver_overrides:
                local = stage_config(cfg, stage)
                ratio = local.SOLVER.BASE_LR / cfg.SOLVER.BASE_LR
                stage_schedules[stage.index] = (build_lr_schedule(local, iters_per_epoch), ratio)
        return {"plan": plan, "schedule": schedule, "stage_schedules": stage_schedules}

    def _part_at(self, i: int) -> _Part:
        return self._parts[max(0, bisect.bisect_right(self._starts, i) - 1)]

    def factor(self, i: int) -> float:
        """The LR factor at iteration ``i``."""
        part = self._part_at(i)
        return part.ratio * part.schedule.factor(i - part.offset)

    def events(self) -> list[tuple[int, str]]:
        """Each stage's start and the events of the schedule in force during it."""
        events: list[tuple[int, str]] = []
        ends = self._starts[1:] + [self.max_iters]
        for part, end in zip(self._parts, ends):
            if len(self._parts) > 1:
                events.append(
                    (part.start, f"stage {part.stage.index + 1} '{part.stage.name}' starts")
                )
            events.extend(
                (i + part.offset, label)
                for i, label in part.schedule.events()
                if part.start <= i + part.offset < end
            )
        events.append((self.max_iters - 1, "last iteration"))
        return merge_events(events)

    def summary(self) -> str:
        """One line for the log."""
        if len(self._parts) == 1:
            return self._parts[0].schedule.summary()
        return " | ".join(
            f"stage {part.stage.index + 1}: "
            + (part.schedule.summary() if part.own else "global schedule")
            for part in self._parts
        )
