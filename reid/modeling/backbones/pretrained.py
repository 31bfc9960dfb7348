"""ImageNet weights for the backbones: finding the published files, loading them, reporting keys.

Functions of paths and names only. A backbone loads a local file (MODEL.BACKBONE.PRETRAIN_PATH)
or, without one, the published file (torchvision's ResNet weights, or IBN-Net's
``resnet*_ibn_a`` weights), looked up by its official name in the torch hub cache,
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), and downloaded there when
the network allows it.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from collections.abc import Mapping, Sequence

import torch
import torchvision.models as tvm
from torch import nn

from reid.utils.checkpoint import LoadReport, WeightsMismatchError, load_state_strict

logger = logging.getLogger(__name__)

_IBN_RELEASE = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"

# (depth, with_ibn) -> published file URLs; the first is downloaded, any of them is used when
# cached (older torchvision releases published the same ImageNet weights under other names).
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

# Keys of the ImageNet classifier, which a backbone does not have: ignored (and reported).
CLASSIFIER_PREFIXES = ("fc.",)


def hub_checkpoint_dir() -> str:
    """``torch.hub.get_dir()/checkpoints``, where published weights are cached."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def published_urls(depth: int, with_ibn: bool) -> list[str]:
    """The URLs of the published ImageNet weights of a ResNet, the one to download first.

    Raises:
        ValueError: None are known for this depth and IBN setting.

    >>> [url.rsplit("/", 1)[1] for url in published_urls(50, True)]
    ['resnet50_ibn_a-d9d0bb7b.pth']
    """
    key = (depth, with_ibn)
    if key not in PUBLISHED_WEIGHTS:
        known = ", ".join(f"depth {d}{' IBN' if i else ''}" for d, i in sorted(PUBLISHED_WEIGHTS))
        ibn = " with IBN" if with_ibn else ""
        raise ValueError(
            f"no published ImageNet weights for ResNet depth {depth}{ibn}; known: {known}. Set "
            f"MODEL.BACKBONE.PRETRAIN_PATH to a local file or MODEL.BACKBONE.PRETRAIN False"
        )
    return PUBLISHED_WEIGHTS[key]


def find_published_file(depth: int, with_ibn: bool, download: bool = True) -> str:
    """The cached published weight file of a ResNet, downloaded into the hub cache when missing.

    Args:
        depth: 18, 34, 50 or 101.
        with_ibn: IBN-Net's IBN-a weights instead of torchvision's.
        download: Download the file when it is not cached.

    Returns:
        The path of the file.

    Raises:
        FileNotFoundError: Not cached and ``download`` is False.
        RuntimeError: The download failed; the message says where to put the file by hand.
    """
    return find_cached_or_download(published_urls(depth, with_ibn), download)


def find_cached_or_download(urls: Sequence[str], download: bool = True) -> str:
    """The first of ``urls``' files found in the torch hub cache, else the first one downloaded.

    Args:
        urls: The published URLs of one set of weights, the one to download first.
        download: Download the file when none is cached.

    Returns:
        The path of the file.

    Raises:
        FileNotFoundError: Not cached and ``download`` is False.
        RuntimeError: The download failed; the message says where to put the file by hand.
    """
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
        f"or set MODEL.BACKBONE.PRETRAIN_PATH to a local copy, or MODEL.BACKBONE.PRETRAIN False "
        f"to start from scratch"
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
    """A checkpoint's tensors, loaded with ``weights_only=True``.

    The tensors are unwrapped from ``state_dict`` / ``model`` entries and stripped of ``module.``
    prefixes (DataParallel / DistributedDataParallel checkpoints).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a weight file or holds no state dict.
    """
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
                f"{path}: holds no tensors at its top level nor under 'state_dict' or 'model' "
                f"(keys: {list(data)[:10]})"
            )
        data = data[inner[0]]
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{path}: expected a state dict (a mapping of names to tensors), "
            f"got {type(data).__name__}"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            continue
        while key.startswith("module."):
            key = key[len("module.") :]
        state[key] = value
    return state


def load_pretrained(
    model: nn.Module,
    path: str,
    new_modules: Sequence[str] = (),
    foreign_keys: Sequence[str] = CLASSIFIER_PREFIXES,
    state: Mapping[str, torch.Tensor] | None = None,
) -> LoadReport:
    """Load ImageNet weights into a backbone, strictly (see :func:`load_state_strict`).

    Args:
        model: The backbone.
        path: The weight file (see :func:`read_state_dict`).
        new_modules: Key prefixes of modules the ImageNet network does not have (non-local or SE
            blocks), left as initialised.
        foreign_keys: Key prefixes of the file to ignore: its ImageNet classifier (``fc.*``).
        state: The file's tensors already read (and adapted, e.g. a resized position
            embedding); default: read ``path``.

    Returns:
        What was loaded, left as initialised and ignored.

    Raises:
        WeightsMismatchError: The file does not fit the backbone; the message names the file and
            the keys, and asks whether the depth and IBN setting are those of the weights.
    """
    try:
        return load_state_strict(
            model,
            read_state_dict(path) if state is None else state,
            source=path,
            reinit_identities=False,
            new_modules=new_modules,
            foreign_keys=foreign_keys,
        )
    except WeightsMismatchError as e:
        raise WeightsMismatchError(
            f"{e}\n(are MODEL.BACKBONE.NAME, DEPTH and WITH_IBN those these weights were trained "
            f"with?)"
        ) from None
