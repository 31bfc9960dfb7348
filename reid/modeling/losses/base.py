"""Base class of the registered loss modules that read a feature tensor from the outputs dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn
from yacs.config import CfgNode

from .utils import loss_block, read_output


class FeatureLoss(nn.Module):
    """A loss built as ``cls(cfg)`` that reads ``outputs[MODEL.LOSSES.<cfg_key>.FEAT_KEY]``."""

    cfg_key: ClassVar[str] = ""
    log_name: ClassVar[str] = ""
    # True for losses whose parameters depend on the feature dim: they are built as
    # ``cls(cfg, feat_dim=...)`` when the meta-architecture passes the head's output dim.
    uses_feat_dim: ClassVar[bool] = False

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        self.feat_key = str(self.block(cfg).FEAT_KEY)

    @classmethod
    def block(cls, cfg: CfgNode) -> CfgNode:
        return loss_block(cfg, cls.cfg_key)

    @classmethod
    def key(cls, name: str) -> str:
        """Full name of a key of this loss's block, for error messages."""
        return f"MODEL.LOSSES.{cls.cfg_key}.{name}"

    def features(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return read_output(outputs, self.feat_key, type(self).__name__, f"{self.cfg_key}.FEAT_KEY")
