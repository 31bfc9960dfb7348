"""Checkpoints: atomic saves of the whole training state, resume, and loading model weights safely."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .file_io import atomic_torch_save, atomic_write_text

logger = logging.getLogger("reid")

LAST_CHECKPOINT = "last_checkpoint"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return (
        model.module
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))
        else model
    )


def get_rng_states() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch in types that ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(_as_tuples(states["python"]))
    n = states["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuples(obj: Any) -> Any:
    """random.setstate needs tuples where a round trip through a checkpoint may give lists."""
    if isinstance(obj, (list, tuple)):
        return tuple(_as_tuples(o) for o in obj)
    return obj


def strip_prefix(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "module."
) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from every key that has it (weights saved from a DDP-wrapped model)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_model_state(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str
) -> tuple[list[str], list[str]]:
    """Load ``state_dict`` non-strictly; a shape mismatch is an error, missing/unexpected keys are logged.

    Returns (missing keys, unexpected keys).
    """
    state_dict = strip_prefix(state_dict)
    own = unwrap_model(model).state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise ValueError(
            f"{source}: parameter shapes do not match the model:\n  " + "\n  ".join(mismatched)
        )
    result = unwrap_model(model).load_state_dict(state_dict, strict=False)
    if result.missing_keys:
        logger.warning(
            "%s: keys missing from the checkpoint (left as initialised): %s",
            source,
            ", ".join(result.missing_keys),
        )
    if result.unexpected_keys:
        logger.warning(
            "%s: keys in the checkpoint that the model does not have: %s",
            source,
            ", ".join(result.unexpected_keys),
        )
    return list(result.missing_keys), list(result.unexpected_keys)


def load_checkpoint_file(path: str) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a bare state dict is returned as {"model": ...}."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path}: cannot be read as a torch checkpoint with weights_only=True: {e}"
        ) from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a dict (a state dict or a checkpoint), got {type(data).__name__}"
        )
    if "model" in data and isinstance(data["model"], dict):
        return data
    if "state_dict" in data and isinstance(data["state_dict"], dict):
        return {"model": data["state_dict"]}
    return {"model": data}


class Checkpointer:
    """Saves and restores the model plus any objects with ``state_dict`` (optimizer, scheduler, scaler).

    Every file is written atomically (temporary file, then rename), and ``last_checkpoint`` in the
    save directory names the newest one, so an interrupted run always resumes from an intact file.
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str,
        save_to_disk: bool = True,
        meta: Mapping[str, Any] | None = None,
        **checkpointables: Any,
    ) -> None:
        """``meta``: facts stored in every checkpoint (e.g. ``num_classes`` for rebuilding the model)."""
        self.model = model
        self.meta = dict(meta or {})
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.checkpointables = checkpointables

    def save(
        self, name: str, tag_last: bool = True, model_only: bool = False, **extra: Any
    ) -> str | None:
        """Write ``<save_dir>/<name>.pth`` with the model, every checkpointable, RNG states and ``extra``.

        ``tag_last`` makes it the checkpoint that ``resume`` continues from; ``model_only`` keeps
        just the model weights, ``meta`` and ``extra`` (for checkpoints that are only evaluated).
        """
        if not self.save_to_disk:
            return None
        data: dict[str, Any] = {"model": unwrap_model(self.model).state_dict(), **self.meta}
        if not model_only:
            data["rng_states"] = get_rng_states()
            for key, obj in self.checkpointables.items():
                data[key] = obj.state_dict()
        data.update(extra)
        path = os.path.join(self.save_dir, f"{name}.pth")
        atomic_torch_save(data, path)
        if tag_last:
            atomic_write_text(os.path.join(self.save_dir, LAST_CHECKPOINT), f"{name}.pth")
        logger.info("Saved checkpoint to %s", path)
        return path

    def get_checkpoint_file(self) -> str | None:
        marker = os.path.join(self.save_dir, LAST_CHECKPOINT)
        if not os.path.isfile(marker):
            return None
        with open(marker, encoding="utf-8") as f:
            name = f.read().strip()
        path = os.path.join(self.save_dir, name)
        return path if os.path.isfile(path) else None

    def has_checkpoint(self) -> bool:
        return self.get_checkpoint_file() is not None

    def load(self, path: str, restore_training_state: bool = True) -> dict[str, Any]:
        """Load a checkpoint; returns what remains (epoch, iteration, ...) after restoring state."""
        data = load_checkpoint_file(path)
        load_model_state(self.model, data.pop("model"), source=path)
        if restore_training_state:
            for key, obj in self.checkpointables.items():
                if key not in data:
                    raise KeyError(f"{path}: checkpoint has no '{key}' state to resume from")
                obj.load_state_dict(data.pop(key))
            if "rng_states" in data:
                set_rng_states(data.pop("rng_states"))
        logger.info("Loaded checkpoint %s", path)
        return data

    def resume_or_load(self, weights: str, resume: bool) -> dict[str, Any]:
        """With ``resume`` and a checkpoint in save_dir: restore everything from it. Otherwise load
        only the model weights from ``weights`` (if given) and start from scratch."""
        if resume:
            last = self.get_checkpoint_file()
            if last is not None:
                return self.load(last, restore_training_state=True)
            logger.info("No checkpoint found in %s: starting from scratch", self.save_dir)
        if weights:
            self.load(weights, restore_training_state=False)
        return {}
