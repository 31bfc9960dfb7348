"""Distributed helpers: single process without a process group, and two gloo processes."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reid.utils import comm


def test_single_process_defaults(monkeypatch):
    assert not dist.is_initialized()
    assert comm.get_world_size() == 1 and comm.get_rank() == 0 and comm.is_main_process()
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert comm.get_local_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert comm.get_local_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ValueError, match="LOCAL_RANK must be an integer"):
        comm.get_local_rank()
    comm.synchronize()
    t = torch.arange(6).view(3, 2)
    gathered = comm.all_gather(t)
    assert len(gathered) == 1 and gathered[0] is t
    ran = []
    with comm.main_process_first():
        ran.append(True)
    assert ran == [True]


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        local = torch.full((rank + 1, 2), float(rank))  # 1 row on rank 0, 2 rows on rank 1
        gathered = comm.all_gather(local)
        empty = comm.all_gather(torch.zeros(0 if rank == 0 else 3, 4, dtype=torch.int64))
        with comm.main_process_first():
            order_file = os.path.join(out_dir, "order.txt")
            with open(order_file, "a") as f:
                f.write(str(rank))
        result = {"gathered": gathered, "empty_shapes": [tuple(e.shape) for e in empty]}
        result.update(rank=comm.get_rank(), world=comm.get_world_size())
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_gather_of_unequal_first_dims_over_two_gloo_processes(tmp_path):
    init_file = str(tmp_path / "init")
    mp.spawn(_worker, args=(2, init_file, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert out["rank"] == rank and out["world"] == 2
        assert [g.tolist() for g in out["gathered"]] == [[[0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
        assert out["empty_shapes"] == [(0, 4), (3, 4)]
    assert (tmp_path / "order.txt").read_text() == "01"
