"""Optimizers with parameter groups and per-iteration LR schedules with warm-up."""

from .lr_scheduler import (
    LR_SCHEDULER_REGISTRY,
    WARMUP_REGISTRY,
    LRSchedule,
    Schedule,
    WarmupLRScheduler,
    build_lr_schedule,
    build_lr_scheduler,
    describe_schedule,
)
from .optim import OPTIMIZER_REGISTRY, build_optimizer, get_param_groups, group_names

__all__ = [
    "LR_SCHEDULER_REGISTRY",
    "OPTIMIZER_REGISTRY",
    "WARMUP_REGISTRY",
    "LRSchedule",
    "Schedule",
    "WarmupLRScheduler",
    "build_lr_schedule",
    "build_lr_scheduler",
    "build_optimizer",
    "describe_schedule",
    "get_param_groups",
    "group_names",
]
