"""Starting one process per GPU (or CPU worker): under torchrun, or spawned by ``--num-gpus``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launched_by_torchrun() -> bool:
    return all(
        k in os.environ for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    )


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "tcp://127.0.0.1:29500",
    args: Sequence[Any] = (),
) -> None:
    """Run ``main_func(*args)`` in every process of the job.

    Under ``torchrun`` (its environment variables are set) the process group comes from the
    environment and ``--num-gpus`` is ignored. Otherwise ``num_gpus_per_machine * num_machines``
    processes are spawned (NCCL with GPUs, gloo on CPUs); a single process runs directly.
    """
    if launched_by_torchrun():
        local_rank = int(os.environ["LOCAL_RANK"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(_backend(), init_method="env://", timeout=DEFAULT_TIMEOUT)
        try:
            main_func(*args)
        finally:
            dist.destroy_process_group()
        return
    world_size = num_gpus_per_machine * num_machines
    if world_size <= 1:
        main_func(*args)
        return
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} "
            f"but this machine has {torch.cuda.device_count()} GPUs"
        )
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, tuple(args)),
        start_method="spawn",
    )


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(num_gpus_per_machine)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        _backend(),
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=DEFAULT_TIMEOUT,
    )
    try:
        dist.barrier()
        main_func(*args)
    finally:
        dist.destroy_process_group()
