"""Seeding and environment facts logged at start."""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch


def seed_all_rng(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def draw_seed() -> int:
    """A fresh random seed, for SEED < 0."""
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def collect_env_info() -> str:
    import torchvision

    lines = [
        f"Python {platform.python_version()} on {platform.platform()}",
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {np.__version__}",
        f"CUDA available: {torch.cuda.is_available()}"
        + (
            f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
            if torch.cuda.is_available()
            else ""
        ),
        f"CPU threads: {torch.get_num_threads()}",
    ]
    return "\n".join(lines)
