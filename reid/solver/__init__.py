"""Optimizers with parameter groups, per-iteration LR schedules with warm-up, training plans."""

from .lr_scheduler import (
    LR_SCHEDULER_REGISTRY,
    WARMUP_REGISTRY,
    CosineSchedule,
    LRSchedule,
    MultiStepSchedule,
    Schedule,
    WarmupLRScheduler,
    build_lr_schedule,
    describe_schedule,
    schedule_table,
)
from .optim import (
    OPTIMIZER_REGISTRY,
    build_optimizer,
    get_param_groups,
    group_names,
    make_optimizer,
)
from .stages import Stage, StagedSchedule, build_training_plan, stage_at_epoch

__all__ = [
    "LR_SCHEDULER_REGISTRY",
    "OPTIMIZER_REGISTRY",
    "WARMUP_REGISTRY",
    "CosineSchedule",
    "LRSchedule",
    "MultiStepSchedule",
    "Schedule",
    "Stage",
    "StagedSchedule",
    "WarmupLRScheduler",
    "build_lr_schedule",
    "build_optimizer",
    "build_training_plan",
    "describe_schedule",
    "get_param_groups",
    "group_names",
    "make_optimizer",
    "schedule_table",
    "stage_at_epoch",
]
