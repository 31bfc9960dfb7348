"""The meta-architecture registry, ``build_model`` and device resolution."""

from __future__ import annotations

import logging

import torch
from torch import nn
from yacs.config import CfgNode

from reid.utils.registry import Registry

logger = logging.getLogger(__name__)

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """Whole models built as ``cls(cfg)``: ``forward(batch)`` returns the outputs dict in
training mode and the test feature (B x D) in eval mode; ``losses(outputs, targets)`` the weighted
loss values by log name."""


def resolve_device(device: str) -> torch.device:
    """MODEL.DEVICE -> a torch.device; "auto" is "cuda" when available, else "cpu"."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"MODEL.DEVICE: {device!r} is not a device ('auto', 'cpu', 'cuda', 'cuda:1', ...): {e}"
        ) from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"MODEL.DEVICE is {device!r} but CUDA is not available here; use 'cpu' or 'auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"MODEL.DEVICE is {device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return resolved


def build_model(cfg: CfgNode) -> nn.Module:
    """MODEL.META_ARCHITECTURE built from ``cfg`` and moved to MODEL.DEVICE."""
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    device = resolve_device(cfg.MODEL.DEVICE)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "built %s with %.2fM parameters on %s", type(model).__name__, n_params / 1e6, device
    )
    return model
