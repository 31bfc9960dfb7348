"""The model summary logged when a model is built: parameters and FLOPs of one test image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reid.structures import BatchKeys

__all__ = ["count_parameters", "describe_model", "flops_per_image"]


def count_parameters(model: nn.Module) -> int:
    """The number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_image(model: nn.Module, size: Sequence[int]) -> int:
    """FLOPs of the model's eval-mode forward on one ``size`` = (height, width) image.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real forward pass (no gradients,
    the model's mode restored afterwards): convolutions and matrix products, a multiply-add
    counting 2; normalisation, pooling and activations are not counted.

    Args:
        model: A meta-architecture (``model({"images": B x 3 x H x W})`` in eval mode).
        size: [height, width] of the test image.
    """
    device = next(model.parameters()).device
    images = torch.zeros(1, 3, int(size[0]), int(size[1]), device=device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model({BatchKeys.IMAGES: images})
    finally:
        model.train(training)
    return int(counter.get_total_flops())


def describe_model(model: nn.Module, size: Sequence[int], flip: bool = False) -> str:
    """One line: parameters (millions) and GFLOPs per test image of ``size``.

    Args:
        model: The meta-architecture.
        size: [height, width] of the test image (INPUT.SIZE_TEST).
        flip: Whether test features average the flipped image's too (TEST.FLIP.ENABLED),
            which doubles the cost per image.
    """
    flops = flops_per_image(model, size)
    doubled = f" (x2 = {2 * flops / 1e9:.2f} with TEST.FLIP.ENABLED)" if flip else ""
    return (
        f"{type(model).__name__}: {count_parameters(model) / 1e6:.2f}M parameters, "
        f"{flops / 1e9:.2f} GFLOPs per {size[0]}x{size[1]} test image{doubled}"
    )
