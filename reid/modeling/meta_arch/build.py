"""The meta-architecture registry, the MODEL keys, ``build_model`` and device resolution."""

from __future__ import annotations

import logging

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.utils.registry import Registry, RegistryKeyError

logger = logging.getLogger(__name__)

# ImageNet's per-channel mean and standard deviation (R, G, B) on the 0..255 scale.
IMAGENET_PIXEL_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_PIXEL_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

MODEL_CONFIG = declare(
    ConfigBlock(
        "MODEL",
        "The model: architecture, device, trained weights, pixel normalisation.",
        {
            "DEVICE": Key(
                "auto",
                (
                    '"auto" = "cuda" when available, else "cpu"; or any torch device string '
                    '("cuda:1").'
                ),
            ),
            "META_ARCHITECTURE": Key(
                "Baseline",
                (
                    'Registered meta-architecture (META_ARCH registry): "Baseline" (backbone + '
                    'head) or "MGN".'
                ),
            ),
            "WEIGHTS": Key(
                "",
                (
                    "Weights of a whole trained model (eval-only, fine-tuning). Loaded with "
                    "weights_only=True."
                ),
            ),
            "PIXEL_MEAN": Key(
                list(IMAGENET_PIXEL_MEAN),
                (
                    "Per-channel mean (R, G, B) on the 0..255 scale: the model normalises its "
                    "input images to (x - PIXEL_MEAN) / PIXEL_STD."
                ),
            ),
            "PIXEL_STD": Key(
                list(IMAGENET_PIXEL_STD),
                "Per-channel standard deviation (R, G, B) of that normalisation, 0..255 scale.",
            ),
        },
    )
)


META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """Whole models, named by MODEL.META_ARCHITECTURE, built as
``cls(cfg)``.

``forward(batch)`` returns the outputs dict in training mode and the test feature (B x D) in eval
mode; ``losses(outputs, targets, weights=None)`` the weighted loss values by log name.
"""


def resolve_device(device: str) -> torch.device:
    """The torch device that MODEL.DEVICE names.

    Args:
        device: "auto" ("cuda" when available, else "cpu") or a torch device string.

    Raises:
        ValueError: Not a device string.
        RuntimeError: A CUDA device that is not available here.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
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
                f"MODEL.DEVICE is {device!r} but only {torch.cuda.device_count()} CUDA device(s) "
                f"are visible"
            )
    return resolved


def build_model(cfg: CfgNode) -> nn.Module:
    """The model MODEL.META_ARCHITECTURE, built from the config and moved to MODEL.DEVICE.

    Args:
        cfg: The whole config.

    Returns:
        The model.

    Raises:
        RegistryKeyError: The name is not registered (the message names the key).
    """
    try:
        cls = META_ARCH_REGISTRY.get(MODEL_CONFIG.value(cfg, "META_ARCHITECTURE"))
    except RegistryKeyError as e:
        raise RegistryKeyError(f"{MODEL_CONFIG.full_key('META_ARCHITECTURE')}: {e}") from None
    model = cls(cfg)
    device = resolve_device(cfg.MODEL.DEVICE)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "built %s with %.2fM parameters on %s", type(model).__name__, n_params / 1e6, device
    )
    return model
