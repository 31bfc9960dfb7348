"""Starting one process per GPU (or CPU worker): under torchrun, or spawned by ``--num-gpus``; and
running a command-line tool so that an error is one clear line.

A collective operation (DDP's gradient all-reduce, a barrier, a gather) that waits longer than
the timeout (``--dist-timeout``; default 5 minutes with gloo on CPUs, 30 with NCCL) fails; with
gloo the error names the ranks that did not respond. NCCL's own watchdog ends a process whose
operation timed out (see INSTALL.md).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reid.config.schema import ConfigError
from reid.utils import comm

logger = logging.getLogger(__name__)

DEFAULT_GLOO_TIMEOUT_S = 300.0
DEFAULT_NCCL_TIMEOUT_S = 1800.0
DEBUG_ENV = "REID_DEBUG"  # "1": errors show their traceback (set by --debug, seen by workers)
# Spawned processes that fail: how long the others get to end on their own before being stopped.
_GRACE_PERIOD_S = 5.0


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def collective_timeout(seconds: float | None = None, backend: str | None = None) -> timedelta:
    """The timeout of collective operations: ``seconds``, else the backend's default."""
    if seconds is None:
        seconds = (
            DEFAULT_NCCL_TIMEOUT_S if (backend or _backend()) == "nccl" else DEFAULT_GLOO_TIMEOUT_S
        )
    if seconds <= 0:
        raise ConfigError(f"--dist-timeout must be > 0 seconds, got {seconds:g}")
    return timedelta(seconds=seconds)


def launched_by_torchrun() -> bool:
    return all(
        k in os.environ for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    )


class WorkerFailedError(RuntimeError):
    """A spawned process failed; its own error was printed by that process."""


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "tcp://127.0.0.1:29500",
    args: Sequence[Any] = (),
    timeout_s: float | None = None,
) -> None:
    """Run ``main_func(*args)`` in every process of the job.

    Under ``torchrun`` (its environment variables are set) the process group comes from the
    environment and ``--num-gpus`` is ignored. Otherwise ``num_gpus_per_machine * num_machines``
    processes are spawned (NCCL with GPUs, gloo on CPUs); a single process runs directly.

    Args:
        main_func: What every process runs.
        num_gpus_per_machine: Processes per machine.
        num_machines: Machines.
        machine_rank: This machine's index.
        dist_url: The process group's init URL.
        args: ``main_func``'s arguments.
        timeout_s: Collective timeout in seconds (None: the backend's default).

    Raises:
        WorkerFailedError: A spawned process failed (it printed its error).
        comm.CollectiveTimeoutError: A collective timed out; names the unresponsive ranks.
    """
    timeout = collective_timeout(timeout_s)
    if launched_by_torchrun():
        local_rank = int(os.environ["LOCAL_RANK"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(_backend(), init_method="env://", timeout=timeout)
        try:
            comm.init_health_group(timeout)
            _run_checked(main_func, args)
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
    context = mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(
            main_func,
            world_size,
            num_gpus_per_machine,
            machine_rank,
            dist_url,
            tuple(args),
            timeout,
        ),
        start_method="spawn",
        join=False,
    )
    try:
        while not context.join(grace_period=_GRACE_PERIOD_S):
            pass
    except mp.ProcessExitedException as e:
        rank = machine_rank * num_gpus_per_machine + e.error_index
        raise WorkerFailedError(
            f"the process of rank {rank} failed (exit code {e.exit_code}"
            f"{', signal ' + e.signal_name if e.signal_name else ''}); its error is printed above"
        ) from None


def _run_checked(main_func: Callable[..., Any], args: Sequence[Any]) -> None:
    """``main_func(*args)``; a collective that timed out or lost a peer becomes an error naming
    the ranks that no longer answer."""
    try:
        main_func(*args)
    except Exception as e:
        if comm.is_communication_failure(e):
            raise comm.CollectiveTimeoutError(comm.describe_unresponsive_ranks(e)) from e
        raise


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
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
        timeout=timeout,
    )
    try:
        comm.init_health_group(timeout)
        dist.barrier()
        _run_checked(main_func, args)
    except Exception as e:
        if debug_enabled():
            raise  # the parent shows the traceback
        print(f"error (rank {global_rank}): {describe_error(e)}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        dist.destroy_process_group()


def debug_enabled() -> bool:
    """Whether errors show their traceback (``--debug``, or REID_DEBUG=1 in the environment)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def describe_error(error: BaseException) -> str:
    """The error's message, prefixed with its type where the message alone is unclear."""
    text = str(error)
    if isinstance(error, KeyError) or not text:
        return f"{type(error).__name__}: {text}"
    return text


def run_tool(
    main: Callable[[], int | None],
    debug: bool = False,
    usage_errors: tuple[type[BaseException], ...] = (ConfigError,),
) -> int:
    """Run a command-line tool's ``main`` and return its exit status.

    An error is printed as ``error: <message>`` on stderr, without a traceback; the traceback goes
    to the run's log.txt when a log is set up, and to stderr with ``debug`` (``--debug``) or
    REID_DEBUG=1. The status is 2 for a usage error (a config error), 1 for any other, 130 for
    Ctrl-C.

    Args:
        main: The tool; returns its exit status (None = 0).
        debug: Show the traceback.
        usage_errors: Exception types that mean the command itself is wrong (status 2).
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"  # spawned workers inherit it
    try:
        return main() or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        logging.getLogger("reid").debug("Traceback of the error:\n%s", traceback.format_exc())
        if debug_enabled():
            traceback.print_exc()
        else:
            print(f"error: {describe_error(e)}", file=sys.stderr)
        return 2 if isinstance(e, usage_errors) else 1
