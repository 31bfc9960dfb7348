"""What the heads share: the pooling layer, the classifier, the config arguments, the outputs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigError, InvalidArgument
from reid.modeling.layers import build_classifier, build_pooling
from reid.modeling.layers.pooling import GlobalAvgPool
from reid.structures import OutputKeys

from .build import HEADS_CONFIG

logger = logging.getLogger(__name__)


def reduction_layer(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A bias-free 1x1 convolution (a linear map of N x C x 1 x 1 pooled features).

    Kaiming-initialised (fan out), as fastreid's reduction layers.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ReidHead(nn.Module):
    """Base of the registered heads: feature map -> pooled embedding -> classifier.

    A subclass builds its layers between ``pool_layer`` and ``classifier`` (in that order, which
    fixes its parameter order and initialisation), sets ``out_dim`` and returns
    :meth:`training_outputs` in training mode.

    Args:
        in_channels: The channels of the backbone's feature map; must be positive.
        pooling: The global pooling module; default global average pooling.
    """

    config_block = HEADS_CONFIG
    # Keys of the block the head has no argument for -> why; they must keep their defaults.
    ignored_keys: ClassVar[Mapping[str, str]] = {}
    out_dim: int
    classifier: nn.Module

    def __init__(self, in_channels: int, pooling: nn.Module | None = None) -> None:
        super().__init__()
        if in_channels <= 0:
            raise InvalidArgument(
                "in_channels",
                f"must be positive (the channels of the backbone's feature map), got {in_channels}",
            )
        self.pool_layer = GlobalAvgPool() if pooling is None else pooling

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int) -> ConfigArgs:
        """The head's arguments from MODEL.HEADS; the pooling and classifier from their keys.

        Args:
            cfg: The whole config.
            in_channels: The channels of the backbone's feature map.

        Raises:
            ConfigError: A key the head has no option for is set to something else than its
                default (which the head could not honour).
        """
        for name, why in cls.ignored_keys.items():
            value, default = HEADS_CONFIG.value(cfg, name), HEADS_CONFIG.keys[name].default
            if value != default:
                raise ConfigError(
                    f"{HEADS_CONFIG.full_key(name)} is {value!r}, which {cls.__name__} cannot "
                    f"honour: {why}; leave it at {default!r} (the key is EmbeddingHead's)"
                )
        args = HEADS_CONFIG.arguments(cfg, skip=("NAME", *cls.ignored_keys))
        args.set("in_channels", in_channels)
        args.set("pooling", build_pooling(cfg))
        return args.set("classifier", functools.partial(build_classifier, cfg))

    def training_outputs(
        self, features: torch.Tensor, neck_features: torch.Tensor, targets: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """``features``, ``neck_features`` and the classifier's outputs on ``neck_features``."""
        outputs = {OutputKeys.FEATURES: features, OutputKeys.NECK_FEATURES: neck_features}
        outputs.update(self.classifier(neck_features, targets))
        return outputs


def check_embedding_dim(embedding_dim: int, zero_means: str) -> int:
    """``embedding_dim`` if >= 0.

    Raises:
        InvalidArgument: Saying what 0 means (``zero_means``).
    """
    if embedding_dim < 0:
        raise InvalidArgument(
            "embedding_dim", f"must be >= 0 (0 = {zero_means}), got {embedding_dim}"
        )
    return int(embedding_dim)
