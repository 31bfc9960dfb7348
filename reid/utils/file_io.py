"""Atomic file writes: a reader never sees a half-written checkpoint, config or result file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import torch


@contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    On error the temporary file is removed and ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON, keys in their order (metric tables stay readable)."""
    text = json.dumps(obj, indent=2) + "\n"  # serialise first: an error leaves ``path`` untouched
    atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
