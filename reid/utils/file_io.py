"""Atomic file writes: a reader never sees a half-written checkpoint, config or result file.

Every file is written to a temporary file next to it (``.<name>.<random>.tmp``) and renamed into
place when complete. The files get the permissions of the user's umask, like any file the user
creates. A full disk is an error naming the file. A temporary file left by a killed process is
removed by :func:`remove_stale_temp_files` when the next run starts in its folder.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import torch

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
# ``tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")`` names: 8 random characters before .tmp.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left on the device (or the disk quota exceeded) while writing a file.

    ``errno`` is ENOSPC or EDQUOT; the message (``strerror``) names the file.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def current_umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _disk_full_cause(error: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT error in ``error``'s chain (torch's writer wraps it in RuntimeErrors)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return current
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    The file gets mode 0666 less the umask. On error the temporary file is removed and ``path`` is
    left as it was.

    Raises:
        DiskFullError: The device is full (or the quota exceeded); the message names ``path``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX, dir=directory
    )
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600 files
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        full = _disk_full_cause(e)
        if full is not None:
            previous = (
                "its previous version is intact"
                if os.path.exists(path)
                else "nothing was written there"
            )
            raise DiskFullError(
                full.errno,
                f"no space left on device writing {path} ({os.strerror(full.errno or 0)}); "
                f"{previous}. Free some space and run again",
            ) from e
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


def remove_stale_temp_files(directory: str) -> list[str]:
    """Delete the temporary files that interrupted atomic writes left in ``directory``.

    Only call it while no other process writes there (a run holds the folder's lock).

    Args:
        directory: The folder (not searched recursively).

    Returns:
        The removed paths (each logged with its size).
    """
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if _TEMP_NAME.match(name) and os.path.isfile(path):
            size = os.path.getsize(path)
            os.remove(path)
            removed.append(path)
            logger.info(
                "Removed %s (%.1f MB), a partial file left by an interrupted write",
                path,
                size / 2**20,
            )
    return removed
