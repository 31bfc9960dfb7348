"""Classifier layers selected by MODEL.HEADS.CLS_LAYER.

Every classifier returns a dict: ``logits`` (the CE input: margin applied when targets are given in
training, times the scale), ``pred_logits`` (no margin, scaled) and ``cls_weight`` (the C x D
weight parameter itself, so losses such as the ratio loss can read it).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.utils.registry import Registry

CLASSIFIER_REGISTRY = Registry("CLASSIFIER")


@CLASSIFIER_REGISTRY.register()
class Linear(nn.Module):
    """Plain linear classifier without bias (the bag-of-tricks head), logits times SCALE."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 1.0, margin: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.normal_(self.weight, std=0.001)
        self.scale = scale

    def forward(self, features: torch.Tensor, targets: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        logits = F.linear(features, self.weight) * self.scale
        return {"logits": logits, "pred_logits": logits, "cls_weight": self.weight}


def build_classifier(cfg: CfgNode, in_dim: int, num_classes: int) -> nn.Module:
    if num_classes <= 0:
        raise ValueError(
            f"MODEL.HEADS.NUM_CLASSES must be positive to build a classifier, got {num_classes} "
            f"(it is set from the training set when the trainer builds the model)"
        )
    heads = cfg.MODEL.HEADS
    return CLASSIFIER_REGISTRY.get(heads.CLS_LAYER)(in_dim, num_classes, scale=heads.SCALE, margin=heads.MARGIN)
