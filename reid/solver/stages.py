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
- SOLVER: schedule keys (BASE_LR, SCHED, STEPS, GAMMA, WARMUP_*, DELAY_EPOCHS, ETA_MIN_LR) for a
  schedule of the stage's own, counted from its first epoch (MAX_EPOCH = the stage's EPOCHS).
  Left out: the run's global schedule simply continues through the stage.
With SOLVER.STAGES empty the run is one stage covering MAX_EPOCH with the config as it is.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yacs.config import CfgNode

from reid.config import ConfigError
from reid.config.config import merge_dict_into
from reid.config.schema import ConfigBlock, Key, declare

from .lr_scheduler import LRSchedule, build_lr_schedule

STAGES_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        "Training plans of several stages (reid/solver/stages.py).",
        {
            "STAGES": Key(
                [],
                (
                    "Training stages of one run (see reid/solver/stages.py): a list of mappings "
                    "with EPOCHS, LOSSES (name -> weight), TRAINABLE (parameter-name regexes) and"
                    " SOLVER (schedule overrides)."
                ),
            ),
        },
    )
)


STAGE_KEYS = ("NAME", "EPOCHS", "LOSSES", "TRAINABLE", "SOLVER")
SCHEDULE_KEYS = (
    "BASE_LR",
    "SCHED",
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
    index: int
    name: str
    start_epoch: int
    epochs: int
    loss_weights: dict[str, float] | None = None
    trainable: tuple[str, ...] = ()
    solver_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def end_epoch(self) -> int:
        return self.start_epoch + self.epochs

    def describe(self) -> str:
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
            f"stage {self.index + 1} '{self.name}': epochs {self.start_epoch + 1}-{self.end_epoch}; "
            f"losses: {losses}; trainable: {trainable}; LR: {lr}"
        )


def _check_keys(where: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def _parse_stage(cfg: CfgNode, index: int, raw: Any, start_epoch: int) -> Stage:
    where = f"SOLVER.STAGES[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: a stage must be a mapping with keys {', '.join(STAGE_KEYS)}, got {raw!r}"
        )
    _check_keys(where, raw, STAGE_KEYS)
    epochs = raw.get("EPOCHS")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"{where}.EPOCHS must be a whole number >= 1, got {epochs!r}")

    loss_weights = raw.get("LOSSES")
    if loss_weights is not None:
        if not isinstance(loss_weights, Mapping) or not loss_weights:
            raise ConfigError(
                f"{where}.LOSSES must map loss names to weights, got {loss_weights!r}"
            )
        built = list(cfg.MODEL.LOSSES.NAME)
        for name, weight in loss_weights.items():
            if name not in built:
                raise ConfigError(
                    f"{where}.LOSSES names '{name}', which MODEL.LOSSES.NAME does not build; "
                    f"list every loss of every stage there (now: {built})"
                )
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"{where}.LOSSES.{name} must be a number, got {weight!r}")
        loss_weights = {k: float(v) for k, v in loss_weights.items()}

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

    overrides = raw.get("SOLVER", {}) or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}.SOLVER must be a mapping of schedule keys, got {overrides!r}")
    _check_keys(f"{where}.SOLVER", overrides, SCHEDULE_KEYS)
    stage = Stage(
        index=index,
        name=str(raw.get("NAME", f"stage{index + 1}")),
        start_epoch=start_epoch,
        epochs=epochs,
        loss_weights=loss_weights,
        trainable=tuple(trainable),
        solver_overrides=dict(overrides),
    )
    if stage.solver_overrides:
        stage_config(cfg, stage)  # validates the override values
    return stage


def build_training_plan(cfg: CfgNode) -> list[Stage]:
    """The stages of the run, validated; one stage over MAX_EPOCH when SOLVER.STAGES is empty."""
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


def stage_at_epoch(plan: list[Stage], epoch: int) -> Stage:
    """The stage that epoch ``epoch`` (0-based) belongs to; epochs past the end stay in the last."""
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


class StagedSchedule:
    """The LR factor per iteration across stages (same interface as ``LRSchedule``).

    Stages without SOLVER overrides use the global schedule at the global iteration; a stage with
    overrides uses its own schedule at the iteration counted from its start, scaled by its
    BASE_LR relative to the run's (each param group keeps its LR factors).
    """

    def __init__(self, cfg: CfgNode, plan: list[Stage], iters_per_epoch: int) -> None:
        self.iters_per_epoch = iters_per_epoch
        self.max_iters = cfg.SOLVER.MAX_EPOCH * iters_per_epoch
        global_schedule = build_lr_schedule(cfg, iters_per_epoch)
        self._starts: list[int] = []
        self._parts: list[tuple[LRSchedule, float, int, Stage]] = []
        for stage in plan:
            start = stage.start_epoch * iters_per_epoch
            self._starts.append(start)
            if stage.solver_overrides:
                local = stage_config(cfg, stage)
                ratio = local.SOLVER.BASE_LR / cfg.SOLVER.BASE_LR
                self._parts.append((build_lr_schedule(local, iters_per_epoch), ratio, start, stage))
            else:
                self._parts.append((global_schedule, 1.0, 0, stage))

    def factor(self, i: int) -> float:
        schedule, ratio, offset, _ = self._parts[max(0, bisect.bisect_right(self._starts, i) - 1)]
        return ratio * schedule.factor(i - offset)

    def events(self) -> list[tuple[int, str]]:
        events: list[tuple[int, str]] = []
        for k, (schedule, _, offset, stage) in enumerate(self._parts):
            start = self._starts[k]
            end = self._starts[k + 1] if k + 1 < len(self._starts) else self.max_iters
            if len(self._parts) > 1:
                events.append((start, f"stage {stage.index + 1} '{stage.name}' starts"))
            events.extend(
                (i + offset, label) for i, label in schedule.events() if start <= i + offset < end
            )
        events.append((self.max_iters - 1, "last iteration"))
        merged: dict[int, list[str]] = {}
        for i, label in sorted(events, key=lambda e: e[0]):
            if label not in merged.setdefault(i, []):
                merged[i].append(label)
        return [(i, "; ".join(labels)) for i, labels in sorted(merged.items())]

    def summary(self) -> str:
        if len(self._parts) == 1:
            return self._parts[0][0].summary()
        return " | ".join(
            f"stage {stage.index + 1}: "
            + (
                "global schedule"
                if offset == 0 and ratio == 1.0 and not stage.solver_overrides
                else schedule.summary()
            )
            for schedule, ratio, offset, stage in self._parts
        )
