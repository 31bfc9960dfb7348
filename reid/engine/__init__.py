from .defaults import (
    DefaultTrainer,
    build_model_for_eval,
    default_argument_parser,
    default_setup,
    setup,
)
from .launch import launch
from .train_loop import HookBase, SimpleTrainer, TrainerBase

__all__ = [
    "DefaultTrainer",
    "HookBase",
    "SimpleTrainer",
    "TrainerBase",
    "build_model_for_eval",
    "default_argument_parser",
    "default_setup",
    "launch",
    "setup",
]
