"""Distributed helpers that also work in a plain single process (no process group initialised).

Ranks come from torch.distributed when a process group is up; the local rank from the
``LOCAL_RANK`` environment variable that torchrun and ``reid.engine.launch`` set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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
