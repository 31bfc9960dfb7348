#!/usr/bin/env python
"""Training throughput of a config, part by part, in images per second.

    python benchmarks/train_speed.py --config-file configs/Synthetic/quickstart.yml
    python benchmarks/train_speed.py --config-file configs/Market1501/bagtricks_R50.yml \\
        --json speed.json MODEL.DEVICE cuda DATASETS.NAMES "('Synthetic',)"

Measures, on the config's device and data (KEY VALUE overrides apply):

(a) ``loader``: the training loader alone, per input backend (INPUT.BACKEND per_image and
    batched): images on the device per second of wall time and per CPU second (this process and
    its loader processes) with the config's settings, and per core: this process pinned to one
    core, one torch thread, no loader processes, no prefetch thread, per wall and per CPU second
    (the CPU time is what other processes on a shared machine do not inflate; the batched
    backend's cache is built before timing);
(b) ``step``: the model's training step alone (forward, losses, backward, optimizer step, with
    the config's precision, memory format and compilation) on one device-resident random batch;
(c) ``trainer``: the whole ``DefaultTrainer`` (loader, step, hooks, logging), per backend;
(d) ``loop``: a hand-written loop over the same model, optimizer and data: a plain torch
    ``DataLoader`` (per-image) or the cache and batched augmentation called inline (batched),
    then the same step; no hooks, no prefetch thread, no logging.

Trainer and loop are measured in alternating rounds (``--rounds``) and the median of each is
reported, with the ratios trainer / loop and trainer / step. Evaluation is off (DATASETS.TESTS
empty); the timed window excludes the first ``--warmup`` iterations and the final checkpoint.
Results are printed and, with ``--json``, written to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.config import load_config  # noqa: E402
from reid.data.batch_augment import BatchAugment  # noqa: E402
from reid.data.build import ReidDataset, build_reid_train_loader  # noqa: E402
from reid.data.datasets import build_train_records  # noqa: E402
from reid.data.image_cache import open_image_cache  # noqa: E402
from reid.data.samplers import build_train_sampler  # noqa: E402
from reid.data.transforms import build_transforms  # noqa: E402
from reid.engine import DefaultTrainer  # noqa: E402
from reid.engine.train_loop import HookBase  # noqa: E402
from reid.modeling.meta_arch.build import resolve_device  # noqa: E402
from reid.structures import BatchKeys  # noqa: E402
from reid.utils.env import seed_all_rng  # noqa: E402

BACKENDS = ("per_image", "batched")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores"


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's live children (loader processes), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
    except OSError:
        return 0.0
    for pid in children:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


@contextlib.contextmanager
def _one_core() -> Iterator[None]:
    """This process on one core with one torch thread."""
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        os.sched_setaffinity(0, affinity)


def _cfg_with(cfg: Any, *opts: Any) -> Any:
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list([str(o) if not isinstance(o, str) else o for o in opts])
    cfg.freeze()
    return cfg


def measure_loader(cfg: Any, backend: str, iters: int, warmup: int) -> dict[str, float]:
    """Images/s of the training loader alone (wall, and CPU seconds of process + children)."""
    cfg = _cfg_with(cfg, "INPUT.BACKEND", backend)
    loader, _ = build_reid_train_loader(cfg)
    device = torch.device(loader.device)
    loader.sampler.set_epoch(0)
    seed_all_rng(0)
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    _sync(device)
    n = min(iters, len(loader) - warmup)
    cpu0 = time.process_time() + _children_cpu_seconds()
    start = time.perf_counter()
    images = 0
    for _ in range(n):
        images += len(next(batches)[BatchKeys.TARGETS])
    _sync(device)
    wall = time.perf_counter() - start
    cpu = time.process_time() + _children_cpu_seconds() - cpu0
    loader.close()
    return {"images_per_s": images / wall, "images_per_cpu_s": images / max(cpu, 1e-9)}


def _raw_step(trainer: DefaultTrainer) -> Callable[[dict[str, Any]], None]:
    """The hand-written step: the trainer's module, optimizer and options, none of its code."""
    module, optimizer, opts = trainer.train_module, trainer.optimizer, trainer.options
    device = next(trainer.model.parameters()).device
    memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format

    def step(batch: dict[str, Any]) -> None:
        batch = dict(batch)
        batch[BatchKeys.IMAGES] = (
            batch[BatchKeys.IMAGES]
            .to(device, non_blocking=True)
            .contiguous(memory_format=memory_format)
        )
        optimizer.zero_grad(set_to_none=True)
        context = (
            torch.autocast(device.type, dtype=opts.amp_dtype)
            if opts.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with context:
            loss = sum(module(batch, None).values())
        if opts.grad_scaler is not None:
            opts.grad_scaler.scale(loss).backward()
            opts.grad_scaler.step(optimizer)
            opts.grad_scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def measure_step(cfg: Any, iters: int, warmup: int) -> float:
    """Images/s of the step alone on one device-resident random P x K batch."""
    trainer = DefaultTrainer(cfg)
    device = next(trainer.model.parameters()).device
    size = cfg.INPUT.SIZE_TRAIN
    batch_size = trainer.data_loader.batch_size
    k = cfg.DATALOADER.NUM_INSTANCE
    batch = {
        BatchKeys.IMAGES: torch.rand(batch_size, 3, *size, device=device) * 255,
        BatchKeys.TARGETS: torch.arange(batch_size, device=device) // k,
    }
    step = _raw_step(trainer)
    trainer.model.train()
    for _ in range(warmup):
        step(batch)
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step(batch)
    _sync(device)
    return batch_size * iters / (time.perf_counter() - start)


class _Trainer(DefaultTrainer):
    """The default trainer without evaluation (not part of the measured training)."""

    @classmethod
    def test(cls, cfg: Any, model: Any, epoch: int | None = None) -> dict[str, dict[str, float]]:
        return {}


class _Timer(HookBase):
    """Wall time of iterations ``warmup`` .. the last, the device synchronised at both ends."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0

    def before_step(self) -> None:
        if self.trainer.iter == self.warmup:
            _sync(self.device)
            self.start = time.perf_counter()

    def after_step(self) -> None:
        if self.trainer.iter == self.trainer.max_iter - 1:
            _sync(self.device)
            self.end = time.perf_counter()


def measure_trainer(cfg: Any, iters: int, warmup: int) -> float:
    """Images/s of ``DefaultTrainer.train`` over ``warmup + iters`` iterations (one epoch)."""
    trainer = _Trainer(cfg)
    device = next(trainer.model.parameters()).device
    trainer.iters_per_epoch = min(warmup + iters, len(trainer.data_loader))
    timer = _Timer(warmup, device)
    trainer.register_hooks([timer])
    trainer.train()
    measured = trainer.iters_per_epoch - warmup
    return trainer.data_loader.batch_size * measured / (timer.end - timer.start)


def _plain_batches(cfg: Any, trainer: DefaultTrainer) -> Iterator[dict[str, Any]]:
    """The data as a hand-written loop gets it: a torch DataLoader over the same records and
    transform (per-image), or the cache and the batched augmentation called inline."""
    records, _ = build_train_records(cfg)
    sampler = build_train_sampler(cfg, records, rank=0, world_size=1, seed=cfg.SEED)
    sampler.set_epoch(0)
    transform = build_transforms(cfg, is_train=True)
    device = next(trainer.model.parameters()).device
    cuda = device.type == "cuda"
    if cfg.INPUT.BACKEND == "per_image":
        workers = cfg.DATALOADER.NUM_WORKERS
        yield from torch.utils.data.DataLoader(
            ReidDataset(records, transform),
            batch_size=sampler.batch_size,
            sampler=sampler,
            num_workers=workers,
            drop_last=True,
            pin_memory=cuda,
            persistent_workers=workers > 0,
        )
        return
    resize, augment = BatchAugment.from_transform(transform)
    cache_dir = cfg.INPUT.CACHE_DIR or os.path.join(cfg.OUTPUT_DIR, "image_cache")
    cache = open_image_cache([r.path for r in records], resize, cache_dir)
    generator = torch.Generator(device=device).manual_seed(0)
    targets = torch.tensor([r.pid for r in records])
    batch_size = sampler.batch_size
    indices = list(sampler)
    for b in range(len(indices) // batch_size):
        index = indices[b * batch_size : (b + 1) * batch_size]
        out = torch.empty((len(index), 3, *cache.size), dtype=torch.uint8, pin_memory=cuda)
        images = cache.gather(index, out=out).to(device, non_blocking=True)
        yield {
            BatchKeys.IMAGES: augment(images, generator),
            BatchKeys.TARGETS: targets[index].to(device, non_blocking=True),
        }


def measure_loop(cfg: Any, iters: int, warmup: int) -> float:
    """Images/s of the hand-written loop over ``warmup + iters`` batches."""
    trainer = DefaultTrainer(cfg)
    device = next(trainer.model.parameters()).device
    step = _raw_step(trainer)
    trainer.model.train()
    seed_all_rng(0)
    batches = _plain_batches(cfg, trainer)
    total = min(warmup + iters, len(trainer.data_loader))
    start = 0.0
    for i in range(total):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        step(next(batches))
    _sync(device)
    batch_size = trainer.data_loader.batch_size
    return batch_size * (total - warmup) / (time.perf_counter() - start)


def _progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    output = tempfile.mkdtemp(prefix="reid_train_speed_")
    cfg = load_config(
        args.config_file or None,
        [
            "OUTPUT_DIR",
            output,
            "DATASETS.TESTS",
            "()",
            "SOLVER.MAX_EPOCH",
            "1",
            "SOLVER.CHECKPOINT_PERIOD",
            "0",
            *args.opts,
        ],
    )
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    backends = args.backends
    results: dict[str, Any] = {
        "config": args.config_file,
        "overrides": args.opts,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loader": {},
        "trainer": {},
        "loop": {},
        "ratios": {},
    }
    for backend in backends:
        bcfg = _cfg_with(cfg, "INPUT.BACKEND", backend)
        build_reid_train_loader(bcfg)[0].close()  # builds the batched backend's cache first
        wall = measure_loader(bcfg, backend, args.iters, args.warmup)
        with _one_core():
            core_cfg = _cfg_with(
                bcfg, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.PREFETCH_THREAD", "off"
            )
            per_core = measure_loader(core_cfg, backend, args.iters, args.warmup)
        results["loader"][backend] = {
            "images_per_s": wall["images_per_s"],
            "images_per_cpu_s": wall["images_per_cpu_s"],
            "images_per_s_one_core": per_core["images_per_s"],
            "images_per_cpu_s_one_core": per_core["images_per_cpu_s"],
        }
        _progress(f"(a) loader {backend}: {results['loader'][backend]}")
    results["device"] = _device_name(resolve_device(cfg.MODEL.DEVICE))
    results["step"] = measure_step(cfg, args.iters, args.warmup)
    _progress(f"(b) step alone: {results['step']:.1f} images/s")
    for backend in backends:
        bcfg = _cfg_with(cfg, "INPUT.BACKEND", backend)
        trainer_runs, loop_runs = [], []
        for _ in range(args.rounds):
            trainer_runs.append(measure_trainer(bcfg, args.iters, args.warmup))
            loop_runs.append(measure_loop(bcfg, args.iters, args.warmup))
            _progress(
                f"{backend}: (c) trainer {trainer_runs[-1]:.1f}, (d) loop {loop_runs[-1]:.1f} "
                "images/s"
            )
        results["trainer"][backend] = {
            "median": statistics.median(trainer_runs),
            "runs": trainer_runs,
        }
        results["loop"][backend] = {"median": statistics.median(loop_runs), "runs": loop_runs}
        results["ratios"][backend] = {
            "trainer/loop": statistics.median(trainer_runs) / statistics.median(loop_runs),
            "trainer/step": statistics.median(trainer_runs) / results["step"],
        }
    if len(backends) == 2:
        core = {b: results["loader"][b]["images_per_cpu_s_one_core"] for b in backends}
        ratio = core["batched"] / core["per_image"]
        results["ratios"]["loader batched/per_image, per CPU second on one core"] = ratio
    return results


def report(results: dict[str, Any]) -> str:
    rows = [("part", "backend", "images/s")]
    for backend, r in results["loader"].items():
        rows.append(("(a) loader, wall", backend, f"{r['images_per_s']:.1f}"))
        rows.append(("(a) loader, per CPU second", backend, f"{r['images_per_cpu_s']:.1f}"))
        rows.append(("(a) loader, one core, wall", backend, f"{r['images_per_s_one_core']:.1f}"))
        rows.append(
            ("(a) loader, one core, per CPU s", backend, f"{r['images_per_cpu_s_one_core']:.1f}")
        )
    rows.append(("(b) step alone", "-", f"{results['step']:.1f}"))
    for backend in results["trainer"]:
        rows.append(("(c) trainer", backend, f"{results['trainer'][backend]['median']:.1f}"))
        rows.append(("(d) hand-written loop", backend, f"{results['loop'][backend]['median']:.1f}"))
    for backend, ratios in results["ratios"].items():
        if isinstance(ratios, dict):
            for name, value in ratios.items():
                rows.append((f"ratio {name}", backend, f"{value:.3f}"))
        else:
            rows.append((f"ratio {backend}", "-", f"{ratios:.3f}"))
    head = f"# {results['device']}; torch {results['torch']}, {results['threads']} threads"
    return head + "\n" + _table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="configs/Synthetic/quickstart.yml")
    parser.add_argument("--iters", type=int, default=20, help="measured iterations")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured iterations first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating trainer/loop rounds")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    parser.add_argument("--verbose", action="store_true", help="show reid's log messages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    results = run(args)
    print(report(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
