"""Backbones: normalised images -> feature map, with ``out_channels``."""

from reid.utils.registry import import_submodules

from .build import BACKBONE_CONFIG, BACKBONE_REGISTRY, build_backbone
from .pretrained import find_published_file, load_pretrained, read_state_dict
from .resnet import RESNET_CONFIG, ResNet, build_resnet_backbone, parse_depth

import_submodules(__name__, __path__)  # every component file registers itself

__all__ = [
    "BACKBONE_CONFIG",
    "BACKBONE_REGISTRY",
    "RESNET_CONFIG",
    "ResNet",
    "build_backbone",
    "build_resnet_backbone",
    "find_published_file",
    "load_pretrained",
    "parse_depth",
    "read_state_dict",
]
