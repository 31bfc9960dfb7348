"""One run per output folder: a lock file holding the pid and host of the run that owns it.

The lock is an advisory ``flock`` on ``<folder>/run.lock``, which the operating system releases
when its process ends, however it ends; the file records who holds it (pid, host, start time,
command), for the error a second run gets and for the message of the run that takes over the lock
of a process that died. Within one process the lock is re-entrant (the same process may set up
several runs of one folder one after the other).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

LOCK_FILE = "run.lock"


class OutputDirInUseError(RuntimeError):
    """Another process holds the lock of the output folder."""


@dataclass
class _Held:
    fd: int
    path: str
    count: int


_HELD: dict[str, _Held] = {}


def _holder_text(info: dict[str, Any]) -> str:
    pid, host = info.get("pid", "?"), info.get("host", "?")
    started = info.get("started")
    when = f", started {started}" if started else ""
    command = f", command: {info['command']}" if info.get("command") else ""
    return f"pid {pid} on host {host}{when}{command}"


def _read_info(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"unreadable": raw[:200].decode("utf-8", "replace")}
    return info if isinstance(info, dict) else {}


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def acquire_output_dir(directory: str) -> str | None:
    """Take the lock of ``directory`` for this process (created if needed).

    A lock left by a process that died is taken over; the returned message names that process
    (for the caller to log once its log is set up).

    Args:
        directory: The run's output folder.

    Returns:
        The message about the lock of a dead process taken over, or None.

    Raises:
        OutputDirInUseError: Another running process holds it; the message names its pid and host.
    """
    path = os.path.join(os.path.abspath(directory), LOCK_FILE)
    held = _HELD.get(path)
    if held is not None:
        held.count += 1
        return None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_info(fd)
            os.close(fd)
            raise OutputDirInUseError(
                f"OUTPUT_DIR {directory} is in use by another run ({_holder_text(info)}): two runs "
                f"in one folder would overwrite each other's checkpoints and results. Wait for it "
                f"to finish or choose another OUTPUT_DIR (the lock is {path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):  # not a file that its releasing holder has just unlinked
            break
        os.close(fd)
    previous = _read_info(fd)
    taken_over = (
        f"Took over the lock {path} left by {_holder_text(previous)}, which is no longer running"
        if previous
        else None
    )
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
    _HELD[path] = _Held(fd, path, 1)
    return taken_over


def release_output_dir(directory: str, force: bool = False) -> None:
    """Give the lock of ``directory`` back (when this process took it as often as it gave it back,
    or with ``force``); the lock file is removed. A folder this process does not hold is ignored.
    """
    path = os.path.join(os.path.abspath(directory), LOCK_FILE)
    held = _HELD.get(path)
    if held is None:
        return
    held.count -= 1
    if held.count > 0 and not force:
        return
    del _HELD[path]
    try:
        if _same_file(held.fd, path):
            os.remove(path)
    finally:
        os.close(held.fd)


def held_output_dirs() -> list[str]:
    """The folders whose lock this process holds."""
    return [os.path.dirname(path) for path in _HELD]


@atexit.register
def _release_all() -> None:
    for directory in held_output_dirs():
        release_output_dir(directory, force=True)
