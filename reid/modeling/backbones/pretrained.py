"""ImageNet weights for the backbones: finding the published files, loading them, reporting the keys.

MODEL.BACKBONE.PRETRAIN_PATH names a local file; when it is empty, the published file (torchvision's
ResNet weights, or IBN-Net's ``resnet*_ibn_a`` weights with WITH_IBN) is looked up by its official
name in the torch hub cache, ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``),
and downloaded there when the network allows it.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torchvision.models as tvm
from torch import nn

logger = logging.getLogger(__name__)

_IBN_RELEASE = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"

# (depth, with_ibn) -> published file URLs; the first is downloaded, any of them is used when cached
# (older torchvision releases published the same ImageNet weights under other names).
PUBLISHED_WEIGHTS: dict[tuple[int, bool], list[str]] = {
    (18, False): [
        tvm.ResNet18_Weights.IMAGENET1K_V1.url,
        "https://download.pytorch.org/models/resnet18-5c106cde.pth",
    ],
    (34, False): [
        tvm.ResNet34_Weights.IMAGENET1K_V1.url,
        "https://download.pytorch.org/models/resnet34-333f7ec4.pth",
    ],
    (50, False): [
        tvm.ResNet50_Weights.IMAGENET1K_V1.url,
        "https://download.pytorch.org/models/resnet50-19c8e357.pth",
        tvm.ResNet50_Weights.IMAGENET1K_V2.url,
    ],
    (101, False): [
        tvm.ResNet101_Weights.IMAGENET1K_V1.url,
        "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth",
        tvm.ResNet101_Weights.IMAGENET1K_V2.url,
    ],
    (18, True): [_IBN_RELEASE + "resnet18_ibn_a-2f571257.pth"],
    (34, True): [_IBN_RELEASE + "resnet34_ibn_a-94bc1577.pth"],
    (50, True): [_IBN_RELEASE + "resnet50_ibn_a-d9d0bb7b.pth"],
    (101, True): [_IBN_RELEASE + "resnet101_ibn_a-59ea0ac6.pth"],
}

# Keys of the ImageNet classifier: dropped (and reported) when their shape does not fit.
CLASSIFIER_PREFIXES = ("fc.",)


@dataclass
class LoadReport:
    """What loading a weight file into a model did."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        for title, keys in (
            ("missing in the file (left as initialised)", self.missing),
            ("unexpected in the file (ignored)", self.unexpected),
            ("classifier keys with another shape (ignored)", self.skipped),
        ):
            if keys:
                lines.append(f"{len(keys)} {title}: {', '.join(keys)}")
        return "\n".join(lines)


def hub_checkpoint_dir() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def published_urls(depth: int, with_ibn: bool) -> list[str]:
    key = (depth, with_ibn)
    if key not in PUBLISHED_WEIGHTS:
        known = ", ".join(f"depth {d}{' IBN' if i else ''}" for d, i in sorted(PUBLISHED_WEIGHTS))
        raise ValueError(
            f"no published ImageNet weights for ResNet depth {depth}{' with IBN' if with_ibn else ''}; "
            f"known: {known}. Set MODEL.BACKBONE.PRETRAIN_PATH to a local file or MODEL.BACKBONE.PRETRAIN False"
        )
    return PUBLISHED_WEIGHTS[key]


def find_published_file(depth: int, with_ibn: bool, download: bool = True) -> str:
    """The cached published file for this ResNet, downloaded into the hub cache when missing."""
    urls = published_urls(depth, with_ibn)
    directory = hub_checkpoint_dir()
    for url in urls:
        candidate = os.path.join(directory, os.path.basename(url))
        if os.path.isfile(candidate):
            return candidate
    url = urls[0]
    name = os.path.basename(url)
    target = os.path.join(directory, name)
    advice = (
        f"download {url} and put it at {target} (the torch hub cache; TORCH_HOME moves it), "
        f"or set MODEL.BACKBONE.PRETRAIN_PATH to a local copy, or MODEL.BACKBONE.PRETRAIN False to start from scratch"
    )
    if not download:
        raise FileNotFoundError(f"ImageNet weights {name} not found in {directory}: {advice}")
    os.makedirs(directory, exist_ok=True)
    hash_match = torch.hub.HASH_REGEX.search(name)
    logger.info("downloading %s to %s", url, target)
    try:
        torch.hub.download_url_to_file(
            url, target, hash_prefix=hash_match.group(1) if hash_match else None
        )
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(
            f"could not download the ImageNet weights {name} ({e}); no network? Please {advice}"
        ) from e
    return target


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors (``weights_only`` loading), unwrapped from ``state_dict``/``model`` and without ``module.`` prefixes."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise ValueError(
            f"{path}: cannot be read as a PyTorch weight file with weights_only=True: {e}"
        ) from e
    while isinstance(data, Mapping) and not any(isinstance(v, torch.Tensor) for v in data.values()):
        inner = [k for k in ("state_dict", "model") if isinstance(data.get(k), Mapping)]
        if not inner:
            raise ValueError(
                f"{path}: holds no tensors at its top level nor under 'state_dict' or 'model' (keys: {list(data)[:10]})"
            )
        data = data[inner[0]]
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(data).__name__}"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            continue
        while key.startswith("module."):
            key = key[len("module.") :]
        state[key] = value
    return state


def load_pretrained(model: nn.Module, path: str) -> LoadReport:
    """Load ``path`` into ``model`` by name, non-strictly, and log a report of the keys.

    A tensor whose shape differs from the model's is an error, except for the ImageNet classifier
    (``fc.*``), which is skipped.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    report = LoadReport(path=path)
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            if key.startswith(CLASSIFIER_PREFIXES):
                report.skipped.append(key)
                continue
            raise ValueError(
                f"{path}: '{key}' has shape {tuple(value.shape)} in the file but {tuple(own[key].shape)} in the model "
                f"(is MODEL.BACKBONE.DEPTH / WITH_IBN the one these weights were trained with?)"
            )
        usable[key] = value
    result = model.load_state_dict(usable, strict=False)
    report.missing = list(result.missing_keys)
    report.unexpected = list(result.unexpected_keys)
    unexpected = set(report.unexpected)
    report.loaded = [k for k in usable if k not in unexpected]
    logger.info("pretrained weights: %s", report.summary())
    return report
