from .build import BACKBONE_REGISTRY, build_backbone
from .pretrained import LoadReport, find_published_file, load_pretrained, read_state_dict
from .resnet import ResNet, build_resnet_backbone

__all__ = [
    "BACKBONE_REGISTRY",
    "LoadReport",
    "ResNet",
    "build_backbone",
    "build_resnet_backbone",
    "find_published_file",
    "load_pretrained",
    "read_state_dict",
]
