"""fastreid checkpoints: recognising one and renaming its keys to reid's, in one place.

fastreid (1.4.0) and reid build the same networks (with the fastreid conventions that are the
schema defaults) under partly different module names. A fastreid state dict differs in:

- the embedding head: ``heads.weight`` (fastreid keeps the classifier's weight on the head) is
  reid's ``heads.classifier.weight``; fastreid's ``heads.bottleneck`` is one ``nn.Sequential`` of
  [1x1 reduction conv,] BN neck, reid's is ``heads.reduction`` and ``heads.bottleneck``;
- MGN's heads: ``b1_head`` ... ``b33_head`` are reid's ``heads.b1`` ... ``heads.b33``;
- the non-local blocks: fastreid's ``NL_3.0``, ``NL_3.1``, ... count the blocks of a stage, reid's
  ``NL_3.<i>`` name the residual block each one follows;
- squeeze-and-excitation: fastreid's ``se.fc.0`` / ``se.fc.2`` are bias-free linear layers, reid's
  ``se.fc1`` / ``se.fc2`` are 1x1 convolutions with a bias (set to zero: the same function);
- ``pixel_mean`` / ``pixel_std``, persistent buffers in older fastreid releases, are the config's
  (MODEL.PIXEL_MEAN / PIXEL_STD) here: they are returned apart, for the caller to check.

The backbones' own names (ResNet, IBN, ResNeSt, ViT) are fastreid's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch

logger = logging.getLogger(__name__)

# fastreid's per-branch heads of MGN: b1_head, b21_head, ...
_MGN_HEAD = re.compile(r"^(b\d+)_head\.")
_NON_LOCAL = re.compile(r"^(?P<stage>(?:.*\.)?NL_\d+)\.(?P<index>\d+)\.(?P<rest>.*)$")
_SE = re.compile(r"^(?P<prefix>.*\.se)\.fc\.(?P<layer>[02])\.weight$")
PIXEL_KEYS = ("pixel_mean", "pixel_std")


def is_fastreid_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is a fastreid model's: its head keeps the classifier weight as
    ``heads.weight`` (Baseline) or ``b1_head.weight`` (MGN), which no reid model has.

    >>> is_fastreid_state({"heads.weight": torch.zeros(2, 3)})
    True
    >>> is_fastreid_state({"heads.classifier.weight": torch.zeros(2, 3)})
    False
    """
    return any(_strip(k) in ("heads.weight", "b1_head.weight") for k in state)


def fastreid_num_classes(state: Mapping[str, torch.Tensor]) -> int:
    """The number of training identities of a fastreid state dict (its classifier's rows), 0 if
    it has no classifier."""
    for key, value in state.items():
        if _strip(key) in ("heads.weight", "b1_head.weight"):
            return int(value.shape[0])
    return 0


def _strip(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def _head_prefixes(model_keys: Mapping[str, torch.Size]) -> set[str]:
    """The key prefixes of the model's heads: those with a ``classifier.weight``."""
    suffix = "classifier.weight"
    return {k[: -len(suffix)] for k in model_keys if k.endswith(suffix) and k.startswith("heads.")}


def _non_local_positions(model_keys: Mapping[str, torch.Size]) -> dict[str, list[int]]:
    """``<...>NL_<stage>`` -> the sorted block positions of the model's non-local blocks there."""
    positions: dict[str, set[int]] = {}
    for key in model_keys:
        match = _NON_LOCAL.match(key)
        if match:
            positions.setdefault(match["stage"], set()).add(int(match["index"]))
    return {stage: sorted(found) for stage, found in positions.items()}


def _rename_head_key(key: str, heads: set[str], model_keys: Mapping[str, torch.Size]) -> str:
    for prefix in heads:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest == "weight":
            return f"{prefix}classifier.weight"
        match = re.match(r"^bottleneck\.(\d+)\.(.*)$", rest)
        if match:
            index, leaf = int(match[1]), match[2]
            reduction = f"{prefix}reduction.weight" in model_keys
            if reduction and index == 0:
                return f"{prefix}reduction.{leaf}"
            if index == (1 if reduction else 0):
                return f"{prefix}bottleneck.{leaf}"
        return key
    return key


def convert_fastreid_state(
    state: Mapping[str, torch.Tensor], model_keys: Mapping[str, torch.Size]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """fastreid's state dict under reid's key names, for the model whose keys are given.

    A key that has no counterpart keeps its name, so that the strict loader reports it.

    Args:
        state: The fastreid model's state dict (a ``module.`` prefix is dropped).
        model_keys: The reid model's state-dict keys and shapes (``model.state_dict()``).

    Returns:
        The renamed state dict, and the pixel normalisation buffers it held (usually none).
    """
    heads = _head_prefixes(model_keys)
    non_local = _non_local_positions(model_keys)
    converted: dict[str, torch.Tensor] = {}
    pixels: dict[str, torch.Tensor] = {}
    for raw_key, value in state.items():
        key = _strip(raw_key)
        if key in PIXEL_KEYS:
            pixels[key] = value
            continue
        key = _MGN_HEAD.sub(r"heads.\1.", key)
        key = _rename_head_key(key, heads, model_keys)
        match = _NON_LOCAL.match(key)
        if match and match["stage"] in non_local:
            index = int(match["index"])
            positions = non_local[match["stage"]]
            if index < len(positions):
                key = f"{match['stage']}.{positions[index]}.{match['rest']}"
        match = _SE.match(key)
        if match and value.dim() == 2:
            conv = f"{match['prefix']}.fc{1 if match['layer'] == '0' else 2}"
            converted[f"{conv}.weight"] = value[:, :, None, None]
            converted[f"{conv}.bias"] = value.new_zeros(value.shape[0])
            continue
        converted[key] = value
    return converted, pixels
