"""Checkpoints: atomic saves of the whole training state, resume, and safe loading of weights."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .fastreid_checkpoint import convert_fastreid_state, fastreid_num_classes, is_fastreid_state
from .file_io import DiskFullError, atomic_torch_save, atomic_write_text

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"
# Version 2: "epoch" counts completed epochs (model_0005.pth holds epoch 5); version 1 (no
# "checkpoint_version" key) stored the 0-based index of the last completed epoch.
CHECKPOINT_VERSION = 2


def completed_epochs(checkpoint: Mapping[str, Any]) -> int:
    """The number of epochs a checkpoint's training state has completed, for either version."""
    epoch = int(checkpoint["epoch"])
    return epoch if int(checkpoint.get("checkpoint_version", 1)) >= 2 else epoch + 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return (
        model.module
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))
        else model
    )


def get_rng_states() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
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


class WeightsMismatchError(ValueError):
    """Weights that do not fit the model: keys missing, unexpected or of another shape."""


@dataclass
class LoadReport:
    """What loading weights into a model did.

    Attributes:
        source: Where the weights came from (a file, or a description).
        loaded: The model's keys that were loaded.
        missing: Keys of modules the weights cannot hold (e.g. non-local blocks on ImageNet
            weights), left as initialised.
        ignored: Keys of the weights that are not for this model (e.g. ImageNet's classifier).
        reinitialised: Per-identity tensors (a classifier, centers) of another identity set:
            absent from the weights or of another class count, left as initialised.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A line per non-empty list: how many tensors were loaded, then what was not."""
        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        for title, keys in (
            ("left as initialised (not in the weights)", self.missing),
            ("ignored (not in the model)", self.ignored),
            ("re-initialised for this identity set", self.reinitialised),
        ):
            if keys:
                lines.append(f"  {title}: {', '.join(keys)}")
        return "\n".join(lines)


def identity_keys(model: nn.Module) -> set[str]:
    """State-dict keys of per-identity tensors: each module's ``identity_parameters`` attribute
    names its tensors with one row per training identity (classifier weights, centers, proxies)."""
    keys = set()
    for name, module in unwrap_model(model).named_modules():
        for tensor in getattr(module, "identity_parameters", ()):
            keys.add(f"{name}.{tensor}" if name else tensor)
    return keys


def _listed(title: str, keys: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
    return f"\n  {title}: {shown}"


def load_state_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    *,
    reinit_identities: bool = True,
    new_modules: Sequence[str] = (),
    foreign_keys: Sequence[str] = (),
) -> LoadReport:
    """Load weights only when they fit: every key of the model present with its shape, no other key.

    The exceptions are explicit: per-identity tensors of another identity set (absent, or another
    row count; see :func:`identity_keys`) with ``reinit_identities``, so that a model trained on one
    dataset fine-tunes on another (fastreid #325); keys under ``new_modules`` that the weights may
    lack; keys under ``foreign_keys`` of the weights that are not for the model. Each is logged.

    Args:
        model: The model (DDP-wrapped or not).
        state_dict: The weights (a ``module.`` prefix is dropped).
        source: Named in the report and the errors (the file, the config key).
        reinit_identities: Allow per-identity tensors of another identity set (not on resume).
        new_modules: Key prefixes of modules the weights cannot hold.
        foreign_keys: Key prefixes of the weights to ignore.

    Returns:
        The report, also logged.

    Raises:
        WeightsMismatchError: Keys missing, unexpected or of another shape, or nothing loaded;
            the message lists them and names ``source``.
    """
    state = strip_prefix(state_dict)
    target = unwrap_model(model)
    own = target.state_dict()
    per_identity = identity_keys(target) if reinit_identities else set()
    report = LoadReport(source=source)
    missing: list[str] = []
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, value in own.items():
        theirs = state.get(key)
        if theirs is not None and tuple(theirs.shape) == tuple(value.shape):
            report.loaded.append(key)
        elif key in per_identity and (
            theirs is None or tuple(theirs.shape[1:]) == tuple(value.shape[1:])
        ):
            report.reinitialised.append(key)
        elif theirs is None and key.startswith(tuple(new_modules)) and new_modules:
            report.missing.append(key)
        elif theirs is None:
            missing.append(key)
        else:
            mismatched.append(f"{key} {tuple(theirs.shape)} vs the model's {tuple(value.shape)}")
    for key in state:
        if key not in own:
            (
                report.ignored
                if foreign_keys and key.startswith(tuple(foreign_keys))
                else unexpected
            ).append(key)
    if missing or unexpected or mismatched or not report.loaded:
        problems = "".join(
            _listed(title, keys)
            for title, keys in (
                ("missing from the weights", missing),
                ("not in the model", unexpected),
                ("of another shape", mismatched),
            )
            if keys
        )
        if not report.loaded:
            problems += "\n  no tensor of the weights fits the model"
        raise WeightsMismatchError(
            f"{source}: the weights do not fit the model ({type(target).__name__}):{problems}"
        )
    target.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    logger.info("%s", report.summary())
    if report.reinitialised:
        logger.info(
            "%s holds another identity set: re-initialised %s for this one",
            source,
            ", ".join(report.reinitialised),
        )
    return report


def is_fastreid_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a checkpoint (as :func:`load_checkpoint_file` returns it) was written by fastreid:
    no reid ``checkpoint_version`` and fastreid's head keys (see :func:`is_fastreid_state`)."""
    return "checkpoint_version" not in checkpoint and is_fastreid_state(checkpoint["model"])


def checkpoint_num_classes(checkpoint: Mapping[str, Any]) -> int:
    """The number of training identities a checkpoint's model was built for; 0 = not recorded
    (reid keeps it as ``num_classes``; fastreid's is its classifier's row count)."""
    if checkpoint.get("num_classes"):
        return int(checkpoint["num_classes"])
    return fastreid_num_classes(checkpoint["model"]) if is_fastreid_checkpoint(checkpoint) else 0


def load_model_weights(
    model: nn.Module,
    checkpoint: Mapping[str, Any],
    source: str,
    *,
    reinit_identities: bool = True,
) -> LoadReport:
    """Load a checkpoint's model weights strictly (:func:`load_state_strict`), reid's or fastreid's.

    A fastreid checkpoint (:func:`is_fastreid_checkpoint`) has its keys renamed to reid's first
    (:func:`reid.utils.fastreid_checkpoint.convert_fastreid_state`); the network must be the one
    its config builds (fastreid's conventions are the schema defaults). Pixel normalisation
    buffers it holds must equal the model's (MODEL.PIXEL_MEAN / PIXEL_STD).

    Args:
        model: The model (DDP-wrapped or not).
        checkpoint: ``{"model": state dict, ...}`` (see :func:`load_checkpoint_file`).
        source: Named in the report and the errors (the file).
        reinit_identities: See :func:`load_state_strict`.

    Returns:
        The report.

    Raises:
        WeightsMismatchError: The weights do not fit (the message names ``source``).
    """
    state = checkpoint["model"]
    if is_fastreid_checkpoint(checkpoint):
        target = unwrap_model(model)
        own = {k: v.shape for k, v in target.state_dict().items()}
        state, pixels = convert_fastreid_state(state, own)
        for name, value in pixels.items():
            mine = getattr(target, name, None)
            if not isinstance(mine, torch.Tensor) or not torch.allclose(
                mine.detach().cpu().flatten(), value.detach().cpu().float().flatten()
            ):
                raise WeightsMismatchError(
                    f"{source}: the fastreid checkpoint normalises images with {name} "
                    f"{value.flatten().tolist()}, the model with "
                    f"{None if mine is None else mine.flatten().tolist()}: set "
                    f"MODEL.{name.upper()} to the checkpoint's values"
                )
        logger.info("%s is a fastreid checkpoint: its keys are renamed to reid's", source)
        source = f"{source} (fastreid checkpoint, keys renamed)"
    return load_state_strict(model, state, source=source, reinit_identities=reinit_identities)


def load_checkpoint_file(path: str) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a bare state dict becomes {"model": ...}."""
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
    """Saves and restores the model plus objects with ``state_dict`` (optimizer, scheduler, scaler).

    Every file is written atomically (temporary file, then rename), and ``last_checkpoint`` in the
    save directory names the newest one, so an interrupted run always resumes from an intact file.
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str,
        save_to_disk: bool = True,
        meta: Mapping[str, Any] | None = None,
        run_outputs: Sequence[str] = (),
        **checkpointables: Any,
    ) -> None:
        """``meta``: facts kept in each checkpoint (e.g. ``num_classes``, to rebuild the model).
        ``run_outputs``: other files of save_dir that belong to the checkpoints' run (e.g.
        ``results.json``), moved aside with them when a run starts over."""
        self.model = model
        self.run_outputs = tuple(run_outputs)
        self.meta = dict(meta or {})
        self.save_dir = save_dir
        self.save_to_disk = save_to_disk
        self.checkpointables = checkpointables
        self.last_saved: str | None = None

    def save(
        self, name: str, tag_last: bool = True, model_only: bool = False, **extra: Any
    ) -> str | None:
        """Write ``<save_dir>/<name>.pth``: model, every checkpointable, RNG states and ``extra``.

        ``tag_last`` makes it the checkpoint that ``resume`` continues from; ``model_only`` keeps
        just the model weights, ``meta`` and ``extra`` (for checkpoints that are only evaluated).
        """
        if not self.save_to_disk:
            return None
        data: dict[str, Any] = {
            "model": unwrap_model(self.model).state_dict(),
            "checkpoint_version": CHECKPOINT_VERSION,
            **self.meta,
        }
        if not model_only:
            data["rng_states"] = get_rng_states()
            for key, obj in self.checkpointables.items():
                data[key] = obj.state_dict()
        data.update(extra)
        path = os.path.join(self.save_dir, f"{name}.pth")
        try:
            atomic_torch_save(data, path)
        except DiskFullError as e:
            intact = (
                f"the previous checkpoint {self.last_saved} is intact"
                if self.last_saved
                else "no earlier checkpoint of this run was written"
            )
            raise DiskFullError(
                e.errno,
                f"no space left on device writing {path}; {intact}. Free some space, then "
                f"continue with --resume",
            ) from e
        if tag_last:
            atomic_write_text(os.path.join(self.save_dir, LAST_CHECKPOINT), f"{name}.pth")
            self.last_saved = path
        logger.info("Saved checkpoint to %s", path)
        return path

    def get_checkpoint_file(self) -> str | None:
        """The checkpoint that ``last_checkpoint`` names, if that file exists."""
        tagged = self.tagged_checkpoint()
        return tagged if tagged is not None and os.path.isfile(tagged) else None

    def tagged_checkpoint(self) -> str | None:
        """The path that ``last_checkpoint`` names (whether or not it exists), or None."""
        marker = os.path.join(self.save_dir, LAST_CHECKPOINT)
        if not os.path.isfile(marker):
            return None
        with open(marker, encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
        return os.path.join(self.save_dir, name) if name else None

    def run_files(self) -> list[str]:
        """The names of the checkpoint files of save_dir (``model_*.pth``, ``last_checkpoint``)."""
        return checkpoint_files(self.save_dir)

    def resume_candidates(self) -> tuple[list[str], list[str]]:
        """The checkpoints to resume from, best first, and why other files were passed over.

        The file that ``last_checkpoint`` names comes first; then every other checkpoint with a
        training state, newest first by the completed epochs (and iterations) it stores, whatever
        its name (old checkpoints counted epochs from 0 in their names).

        Returns:
            (paths, notes): the candidates, and a line per file that cannot be one.
        """
        tagged = self.tagged_checkpoint()
        paths: list[str] = []
        notes: list[str] = []
        if tagged is not None:
            if os.path.isfile(tagged):
                paths.append(tagged)
            else:
                notes.append(f"{tagged} (named in {LAST_CHECKPOINT}): not found")
        ranked = []
        for name in self.run_files():
            path = os.path.join(self.save_dir, name)
            if name == LAST_CHECKPOINT or path == tagged:
                continue
            try:
                ranked.append((_training_progress(path, self.checkpointables), path))
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                notes.append(f"{path}: {e}")
        paths += [path for _, path in sorted(ranked, reverse=True)]
        return paths, notes

    def move_aside(self, names: Sequence[str]) -> str:
        """Move ``names`` (files of save_dir) into a new ``previous_<date-time>`` folder there.

        Returns:
            The folder they were moved to.
        """
        folder = os.path.join(self.save_dir, time.strftime("previous_%Y%m%d-%H%M%S"))
        base, n = folder, 1
        while os.path.exists(folder):
            n += 1
            folder = f"{base}_{n}"
        os.makedirs(folder)
        for name in names:
            os.replace(os.path.join(self.save_dir, name), os.path.join(folder, name))
        return folder

    def load(self, path: str, restore_training_state: bool = True) -> dict[str, Any]:
        """Load a checkpoint; returns what remains (epoch, iteration, ...) after restoring state."""
        data = load_checkpoint_file(path)
        # A resumed run continues on its own identity set; fine-tuning may change it.
        load_model_weights(
            self.model, data, source=path, reinit_identities=not restore_training_state
        )
        data.pop("model")
        if restore_training_state:
            for key, obj in self.checkpointables.items():
                if key not in data:
                    raise KeyError(f"{path}: checkpoint has no '{key}' state to resume from")
                obj.load_state_dict(data.pop(key))
            if "rng_states" in data:
                set_rng_states(data.pop("rng_states"))
        logger.info("Loaded checkpoint %s", path)
        return data

    def resume_or_load(
        self, weights: str, resume: bool, start_over: bool = False
    ) -> dict[str, Any]:
        """With ``resume``: restore everything from the newest loadable checkpoint of save_dir.
        Otherwise load only the model weights from ``weights`` (if given) and start from scratch.

        Progress is never overwritten silently: starting from scratch in a folder that holds
        checkpoints is an error unless ``start_over`` (then they are moved to a ``previous_*``
        folder), and ``resume`` with checkpoints of which none loads is an error listing why.

        Args:
            weights: Model weights for a run that starts from scratch ("" = none).
            resume: Continue from save_dir's checkpoints.
            start_over: Start from scratch even though save_dir holds checkpoints.

        Returns:
            What the checkpoint holds beyond the restored state (epoch, iteration, hooks), or {}.

        Raises:
            ExistingRunError: Checkpoints are there and neither ``resume`` nor ``start_over``.
            ResumeError: ``resume``, checkpoints are there, but none can be loaded.
        """
        if resume and not start_over:
            candidates, notes = self.resume_candidates()
            tagged = self.tagged_checkpoint()
            for path in candidates:
                try:
                    extra = self.load(path, restore_training_state=True)
                except (OSError, ValueError, RuntimeError, KeyError) as e:
                    logger.warning("Cannot resume from %s: %s", path, e)
                    notes.append(f"{path}: {e}")
                    continue
                if path != tagged:
                    logger.warning(
                        "%s names %s, which cannot be loaded; resumed from the newest loadable "
                        "checkpoint instead, %s (%d epochs completed)",
                        LAST_CHECKPOINT,
                        tagged,
                        path,
                        completed_epochs(extra),
                    )
                self.last_saved = path
                return extra
            if notes:
                listed = "".join(f"\n  {note}" for note in notes)
                raise ResumeError(
                    f"--resume: {self.save_dir} holds checkpoints but none can be loaded:{listed}"
                    f"\nRestore a checkpoint, or start from scratch with --start-over (the files "
                    f"are moved to a previous_* folder)"
                )
            logger.info("No checkpoint found in %s: starting from scratch", self.save_dir)
        existing = self.run_files()
        if existing:
            if not start_over:
                check_new_run(self.save_dir)
            if self.save_to_disk:  # the main process moves them; the others only read
                existing += [
                    n for n in self.run_outputs if os.path.exists(os.path.join(self.save_dir, n))
                ]
                folder = self.move_aside(existing)
                logger.warning("Starting over: moved %s to %s", ", ".join(existing), folder)
        if weights:
            self.load(weights, restore_training_state=False)
        return {}


class ExistingRunError(RuntimeError):
    """A run would start from scratch in a folder that holds another run's checkpoints."""


def checkpoint_files(folder: str) -> list[str]:
    """The names of the checkpoint files in ``folder`` (``model_*.pth``, ``last_checkpoint``)."""
    if not os.path.isdir(folder):
        return []
    return sorted(
        n
        for n in os.listdir(folder)
        if (n.startswith("model_") and n.endswith(".pth")) or n == LAST_CHECKPOINT
    )


def check_new_run(folder: str) -> None:
    """A run that starts from scratch in ``folder`` would overwrite checkpoints there: refuse.

    Raises:
        ExistingRunError: ``folder`` holds checkpoints; the message says how to go on.
    """
    existing = checkpoint_files(folder)
    if existing:
        raise ExistingRunError(
            f"{folder} holds the checkpoints of a run ({', '.join(existing)}) and starting from "
            f"scratch would overwrite them: continue that run with --resume, start over with "
            f"--start-over (its files are moved to a previous_* folder), or choose another "
            f"OUTPUT_DIR"
        )


class ResumeError(RuntimeError):
    """``resume`` found checkpoints but none that can be loaded."""


def _training_progress(path: str, checkpointables: Mapping[str, Any]) -> tuple[int, int]:
    """(completed epochs, iteration) of a checkpoint with a training state, read without loading
    its tensors.

    Raises:
        ValueError: The file cannot be read or holds no training state.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"cannot be read as a checkpoint: {e}") from e
    if not isinstance(data, dict) or "epoch" not in data:
        raise ValueError("not a training checkpoint (no 'epoch')")
    missing = [key for key in checkpointables if key not in data]
    if missing:
        raise ValueError(f"weights only, no training state ({', '.join(missing)} missing)")
    return completed_epochs(data), int(data.get("iteration", 0))
