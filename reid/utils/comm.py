"""Distributed helpers that also work in a plain single process (no process group initialised).

Ranks come from torch.distributed when a process group is up; the local rank from the
``LOCAL_RANK`` environment variable that torchrun and ``reid.engine.launch`` set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "is_dist_initialized",
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "is_main_process",
    "synchronize",
    "main_process_first",
    "all_gather",
    "broadcast_object",
    "init_health_group",
    "is_communication_failure",
    "CollectiveTimeoutError",
    "describe_unresponsive_ranks",
]


def is_dist_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist_initialized() else 0


def get_local_rank() -> int:
    """Rank of the process on its machine: ``LOCAL_RANK`` (set by torchrun and launch), else 0."""
    value = os.environ.get("LOCAL_RANK", "0")
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(
            f"environment variable LOCAL_RANK must be an integer, got {value!r}"
        ) from e


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all ranks; a no-op in a single process."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. to extract or download data), the other ranks after it."""
    if not is_main_process():
        synchronize()
    yield
    if is_main_process():
        synchronize()


def _comm_device() -> torch.device:
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor``, in rank order; first dimensions may differ between ranks.

    Each rank pads its tensor to the largest first dimension, all ranks gather, and the padding
    is cut off again. Trailing dimensions and dtype must agree. Results come back on the input's
    device. In a single process: ``[tensor]``.
    """
    world_size = get_world_size()
    if world_size == 1:
        return [tensor]
    if tensor.dim() == 0:
        raise ValueError("all_gather needs a tensor with at least one dimension")
    device = _comm_device()
    local = tensor.to(device).contiguous()
    size = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = local.new_zeros((longest,) + tuple(local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    return [g[:n].to(tensor.device) for g, n in zip(gathered, counts)]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable object) on every rank; ``obj`` itself in a single process."""
    if get_world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class CollectiveTimeoutError(RuntimeError):
    """A collective operation waited for a rank longer than the timeout; names that rank."""


# A gloo group used only to find out which ranks still answer after a collective failed (it does
# not share the state of the group whose operation failed).
_HEALTH_GROUP: Any = None
_TIMEOUT: timedelta | None = None

# What gloo and NCCL errors say when a peer does not answer or went away.
_COMMUNICATION_FAILURE = re.compile(
    r"timed out|timeout|connection closed by peer|connection reset by peer|broken pipe",
    re.IGNORECASE,
)


def init_health_group(timeout: timedelta) -> None:
    """Create the group that :func:`describe_unresponsive_ranks` uses (a collective: call it on
    every rank right after ``init_process_group``)."""
    global _HEALTH_GROUP, _TIMEOUT
    _TIMEOUT = timeout
    _HEALTH_GROUP = dist.new_group(backend="gloo", timeout=timeout)


def is_communication_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective that timed out or lost a peer (not an error of this rank's
    own work, which the other ranks know nothing about)."""
    return (
        is_dist_initialized()
        and isinstance(error, RuntimeError)
        and bool(_COMMUNICATION_FAILURE.search(str(error)))
    )


def _ranks_named(message: str) -> list[int]:
    """The ranks that torch's monitored barrier reports as missing, in its message."""
    found = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", message)
    if found is None:
        found = re.search(r"from rank (\d+)", message)
    if found is None:
        return []
    return sorted({int(r) for r in re.findall(r"\d+", found.group(1))})


def describe_unresponsive_ranks(
    error: BaseException, check_timeout: timedelta | None = None
) -> str:
    """A message for a failed collective that names the ranks that no longer answer.

    The ranks that are still alive meet at a monitored barrier of a separate gloo group (rank 0
    waits for each; the others wait for rank 0); whoever misses it is named.

    Args:
        error: The failure of the collective.
        check_timeout: How long the check waits (default: the collective timeout, at most 60 s).

    Returns:
        The message, naming this rank, the timeout and the unresponsive ranks.
    """
    rank = get_rank()
    timeout = _TIMEOUT.total_seconds() if _TIMEOUT is not None else None
    limit = f" (timeout {timeout:g} s, --dist-timeout)" if timeout is not None else ""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    head = f"rank {rank}: a collective operation failed waiting for the other ranks{limit}"
    if _HEALTH_GROUP is None:
        return f"{head}: {first_line}"
    if check_timeout is None:
        check_timeout = timedelta(seconds=min(timeout or 60.0, 60.0))
    try:
        dist.monitored_barrier(group=_HEALTH_GROUP, timeout=check_timeout, wait_all_ranks=True)
    except RuntimeError as e:
        ranks = _ranks_named(str(e))
        if ranks:
            named = ", ".join(str(r) for r in ranks)
            return (
                f"{head}; rank{'s' if len(ranks) > 1 else ''} {named} did not respond (frozen, "
                f"killed or far slower than the others). The operation said: {first_line}"
            )
        return f"{head}: {first_line}; the check of the other ranks said: {e}"
    return f"{head}: {first_line}; all ranks answered a check afterwards (a passing stall?)"
