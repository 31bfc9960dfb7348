#!/usr/bin/env python
"""The GPU check: training and evaluation speed of the papers' networks, in one run of a few
minutes. Run it through ``benchmarks/gpu_check.sh`` (see there); ``--smoke`` runs every part tiny
on the CPU (what the test suite does, to keep the script working where no GPU is at hand).

Parts, in order (each row of the table is one measurement; a part that the time budget no longer
allows is listed as skipped):

1. ``data``: a Market-1501-sized set in Market-1501's layout (12,936 training, 3,368 query and
   15,913 gallery JPEGs at 128x64, smooth random content) written to a temporary folder.
2. ``sync``: host-device synchronisations per steady-state training step (CUDA's sync debug mode
   counting, between loss fetches), bag-of-tricks R50 bf16 channels-last, each input backend.
3. ``loader``: the training loader alone per backend (images/s, with the config's 8 workers).
4. ``trainer`` / ``loop``: the whole trainer and a hand-written loop (see train_speed.py) on
   the same model and data, bag-of-tricks R50 and MGN, bf16 channels-last, each backend.
5. ``step``: the training step alone on device-resident data: R50 and MGN in fp32, bf16 and
   fp16, without and with channels-last.
6. ``eval``: DefaultTrainer.test on the Market-sized test set (19,281 images: decoding,
   features, metric) in fp32 and bf16; the metric alone on MSMT17-scale random features
   (11,659 queries x 82,161 gallery, 2048-d) on the GPU.
7. ``nccl``: a 2-process trainer run (DDP over NCCL) when two GPUs are present.
8. ``compile``: the step with torch.compile (inductor), R50 then MGN, bf16 channels-last.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from train_speed import (  # noqa: E402
    _Trainer,
    measure_loader,
    measure_loop,
    measure_step,
    measure_trainer,
)

from reid.config import load_config  # noqa: E402
from reid.engine import DefaultTrainer  # noqa: E402
from reid.engine.defaults import with_num_classes  # noqa: E402
from reid.engine.launch import launch  # noqa: E402
from reid.engine.train_loop import HookBase  # noqa: E402
from reid.evaluation.evaluator import score_features  # noqa: E402
from reid.modeling import build_model  # noqa: E402

REPO = os.path.dirname(HERE)
BOT = os.path.join(REPO, "configs", "Market1501", "bagtricks_R50.yml")
MGN = os.path.join(REPO, "configs", "papers", "adasp", "Base-MGN.yml")
PRECISIONS = {
    "fp32": ("SOLVER.AMP.ENABLED", "False"),
    "bf16": ("SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", "bfloat16"),
    "fp16": ("SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", "float16"),
}
BACKENDS = ("per_image", "batched")

# Market-1501's official counts: (identities, images) of train, query and gallery.
FULL = {"train": (751, 12936), "query": (750, 3368), "gallery": (750, 13913), "distractors": 2000}
SMOKE = {"train": (12, 48), "query": (6, 12), "gallery": (6, 24), "distractors": 4}


def _write_jpeg(job: tuple[str, int, int, int]) -> None:
    from PIL import Image

    path, seed, h, w = job
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    image = np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))
    image = np.clip(image.astype(np.int16) + rng.integers(-12, 13, image.shape), 0, 255)
    Image.fromarray(image.astype(np.uint8)).save(path, quality=90)


def fake_market(root: str, counts: dict[str, Any], workers: int) -> str:
    """A set in Market-1501's layout under ``root``; returns ``root``."""
    base = os.path.join(root, "Market-1501-v15.09.15")
    jobs: list[tuple[str, int, int, int]] = []

    def add(folder: str, pid: int, cam: int, k: int) -> None:
        name = f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg"
        jobs.append((os.path.join(base, folder, name), len(jobs), 128, 64))

    ids, images = counts["train"]
    for k in range(images):
        add("bounding_box_train", 1 + k % ids, 1 + (k // ids) % 6, k)
    q_ids, q_images = counts["query"]
    for k in range(q_images):
        add("query", ids + 1 + k % q_ids, 1 + k % 6, k)
    _, g_images = counts["gallery"]
    for k in range(g_images):
        add("bounding_box_test", ids + 1 + k % q_ids, 1 + (k + 3) % 6, k)
    for k in range(counts["distractors"]):
        add("bounding_box_test", 0, 1 + k % 6, g_images + k)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(os.path.join(base, folder), exist_ok=True)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_jpeg, jobs, chunksize=256)
    return root


class _SyncCounter(HookBase):
    """Counts CUDA's synchronisation warnings between iterations ``start`` and the last."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.count = 0
        self.steps = 0
        self._catch: Any = None
        self._records: list[Any] = []

    def before_step(self) -> None:
        if self.trainer.iter == self.start:
            self._catch = warnings.catch_warnings(record=True)
            self._records = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def after_step(self) -> None:
        if self._catch is not None:
            self.steps += 1
        if self._catch is not None and self.trainer.iter == self.trainer.max_iter - 1:
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(None, None, None)
            self.count = sum("synchroniz" in str(w.message) for w in self._records)
            self._catch = None


class Check:
    """Runs the parts within the time budget, collecting rows and printing them as they come."""

    def __init__(self, budget: float, smoke: bool) -> None:
        self.start = time.perf_counter()
        self.budget = budget
        self.smoke = smoke
        self.rows: list[dict[str, Any]] = []

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def run(
        self, part: str, name: str, fn: Callable[[], dict[str, Any]], needs: float = 0.0
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"part": part, "name": name}
        if self.left() < needs:
            row["skipped"] = f"time budget: {self.left():.0f} s left, about {needs:.0f} s needed"
        else:
            began = time.perf_counter()
            try:
                row.update(fn())
            except Exception as e:  # one failed measurement does not stop the others
                row["error"] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            row["seconds"] = round(time.perf_counter() - began, 1)
        self.rows.append(row)
        print(_format(row), flush=True)
        return row

    def skip(self, part: str, name: str, reason: str) -> None:
        self.rows.append({"part": part, "name": name, "skipped": reason})
        print(_format(self.rows[-1]), flush=True)


def _format(row: dict[str, Any]) -> str:
    values = {k: v for k, v in row.items() if k not in ("part", "name", "seconds")}
    shown = ", ".join(
        f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )
    return f"{row['part']:<8} {row['name']:<44} {shown}  [{row.get('seconds', 0)} s]"


def _cfg(base: str, root: str, out: str, smoke: bool, *opts: str) -> Any:
    common = [
        "DATASETS.ROOT",
        root,
        "DATASETS.NAMES",
        "('Market1501',)",
        "DATASETS.TESTS",
        "('Market1501',)",
        "MODEL.BACKBONE.PRETRAIN",
        "False",
        "SOLVER.FREEZE_ITERS",
        "0",
        "SOLVER.DELAY_EPOCHS",
        "0",
        # Throughput only: no warm-up, whose length in iterations (the AdaSP MGN file's 2,000)
        # would not fit the one short epoch.
        "SOLVER.WARMUP_ITERS",
        "0",
        "SOLVER.WARMUP_EPOCHS",
        "0",
        "SOLVER.MAX_EPOCH",
        "1",
        "SOLVER.CHECKPOINT_PERIOD",
        "0",
        "SOLVER.CHANNELS_LAST",
        "True",
        "OUTPUT_DIR",
        out,
        "CUDNN_BENCHMARK",
        "True",
    ]
    if smoke:
        common += [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.BACKBONE.DEPTH",
            "18x",
            "MODEL.BACKBONE.FEAT_DIM",
            "512",
            "MODEL.BACKBONE.LAST_STRIDE",
            "2",
            # 96 rows: MGN's three torch.chunk stripes need a feature map of height >= 5
            "INPUT.SIZE_TRAIN",
            "[96, 32]",
            "INPUT.SIZE_TEST",
            "[96, 32]",
            "SOLVER.IMS_PER_BATCH",
            "8",
            "DATALOADER.NUM_INSTANCE",
            "4",
            "DATALOADER.NUM_WORKERS",
            "1",
            "TEST.IMS_PER_BATCH",
            "16",
            "SOLVER.CHANNELS_LAST",
            "False",
        ]
    else:
        common += ["MODEL.DEVICE", "cuda", "DATALOADER.NUM_WORKERS", "8"]
    return load_config(base, [*common, *opts])


def _nccl_worker(cfg: Any, iters: int, warmup: int, out: str) -> None:
    from reid.utils import comm

    speed = measure_trainer(cfg, iters, warmup)  # per process
    if comm.is_main_process():
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"images_per_s": speed * comm.get_world_size()}, f)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", default="gpu_check.json", help="where the results go")
    parser.add_argument("--budget", type=float, default=450, help="seconds for all parts")
    parser.add_argument("--iters", type=int, default=40, help="measured iterations per run")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured iterations first")
    parser.add_argument("--data-root", default="", help="keep the generated data here")
    parser.add_argument("--smoke", action="store_true", help="every part tiny, on the CPU")
    parser.add_argument("--verbose", action="store_true", help="show reid's log messages")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --smoke to check the script on the CPU")
    iters, warmup = (1, 1) if args.smoke else (args.iters, args.warmup)
    work = tempfile.mkdtemp(prefix="reid_gpu_check_")
    root = args.data_root or os.path.join(work, "data")
    check = Check(args.budget, args.smoke)
    device = "CPU (smoke run)" if args.smoke else torch.cuda.get_device_name(0)
    print(f"# {device}; torch {torch.__version__}; budget {args.budget:.0f} s", flush=True)

    counts = SMOKE if args.smoke else FULL
    check.run("data", "Market-1501-sized JPEG set", lambda: _data(root, counts))
    counter = [0]

    def cfg(base: str, *opts: str) -> Any:
        counter[0] += 1
        return _cfg(base, root, os.path.join(work, f"run{counter[0]}"), args.smoke, *opts)

    bf16 = PRECISIONS["bf16"] if not args.smoke else PRECISIONS["fp32"]
    main = "bf16 cl" if not args.smoke else "fp32"  # the main setting, as the row names say
    models = {"R50": BOT, "MGN": MGN}
    cuda = not args.smoke
    if args.smoke:
        # oneDNN's bfloat16 kernels on CPUs with AMX gave NaN in some runs (not reproducible with
        # the same inputs; tests/engine/test_trainer.py): the smoke run checks the script, so it
        # runs on the plain kernels.
        torch.backends.mkldnn.enabled = False

    for backend in BACKENDS:
        if cuda:
            check.run(
                "sync",
                f"R50 {main}, {backend}",
                lambda b=backend: _syncs(cfg(BOT, *bf16, "INPUT.BACKEND", b), iters, warmup),
                needs=30,
            )
        else:
            check.skip("sync", f"R50 {main}, {backend}", "CUDA's sync debug mode needs a GPU")
        check.run(
            "loader",
            f"{backend}, config's workers",
            lambda b=backend: measure_loader(cfg(BOT, "INPUT.BACKEND", b), b, iters * 2, warmup),
            needs=20,
        )
    for model, base in models.items():
        # The AdaSP MGN file applies AutoAugment, which the batched backend does not implement:
        # both backends run without it, so that they do the same work.
        same_work = ("INPUT.AUTOAUG.ENABLED", "False") if model == "MGN" else ()
        suffix = " (no AutoAugment)" if same_work else ""
        for backend in BACKENDS:
            c = cfg(base, *bf16, *same_work, "INPUT.BACKEND", backend, "LOG_PERIOD", "20")
            check.run(
                "trainer",
                f"{model} {main}, {backend}{suffix}",
                lambda c=c: _ratio(c, iters, warmup),
                needs=40,
            )
    for model, base in models.items():
        for precision, opts in PRECISIONS.items():
            for channels_last in ("False", "True"):
                name = f"{model} {precision}{' cl' if channels_last == 'True' else ''}"
                if args.smoke and (precision == "fp16" or channels_last == "True"):
                    check.skip("step", name, "smoke run: fp16 and channels-last are slow on CPUs")
                    continue
                c = cfg(base, *opts, "SOLVER.CHANNELS_LAST", channels_last)
                check.run(
                    "step",
                    name,
                    lambda c=c: {"images_per_s": measure_step(c, iters, warmup)},
                    needs=15,
                )
    for name, opts in (
        ("fp32", ("TEST.AMP.ENABLED", "False")),
        ("bf16", ("TEST.AMP.ENABLED", "True")),
    ):
        c = cfg(BOT, *opts)
        check.run("eval", f"Market-sized test set, {name}", lambda c=c: _evaluate(c), needs=30)
    sizes = (11659, 82161, 2048) if not args.smoke else (50, 300, 64)
    check.run("eval", "MSMT17-scale random features, metric", lambda: _features(sizes, cuda))
    if not cuda or torch.cuda.device_count() >= 2:  # the smoke run checks it with gloo
        c = cfg(BOT, *bf16)
        name = f"R50 {main}, 2 processes" + ("" if cuda else " (gloo, smoke)")
        check.run("nccl", name, lambda: _nccl(c, iters, warmup, work), 90)
    else:
        check.skip("nccl", "2 processes", "fewer than 2 GPUs")
    compile_opts = ("SOLVER.COMPILE.ENABLED", "True")
    if args.smoke:
        compile_opts += ("SOLVER.COMPILE.BACKEND", "eager")
    for model, base in models.items():
        c = cfg(base, *bf16, *compile_opts)
        check.run(
            "compile",
            f"{model} {main} compiled (compile time included in seconds)",
            lambda c=c: {"images_per_s": measure_step(c, iters, warmup)},
            needs=150 if model == "R50" else 200,
        )

    result = {"device": device, "torch": torch.__version__, "rows": check.rows}
    result["total_seconds"] = round(time.perf_counter() - check.start, 1)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"# {result['total_seconds']} s in all; written to {args.json}")
    if not args.data_root:
        shutil.rmtree(work, ignore_errors=True)


def _data(root: str, counts: dict[str, Any]) -> dict[str, Any]:
    marker = os.path.join(root, "Market-1501-v15.09.15", "bounding_box_test")
    if not os.path.isdir(marker):
        fake_market(root, counts, workers=max(1, min(16, os.cpu_count() or 1)))
    total = sum(v[1] for k, v in counts.items() if k != "distractors") + counts["distractors"]
    return {"images": total}


def _syncs(cfg: Any, iters: int, warmup: int) -> dict[str, Any]:
    cfg.defrost()
    cfg.LOG_PERIOD = 10_000  # no fetch inside the counted window
    cfg.freeze()
    trainer = _Trainer(cfg)
    trainer.iters_per_epoch = min(warmup + iters, len(trainer.data_loader))
    counter = _SyncCounter(warmup)
    trainer.register_hooks([counter])
    trainer.train()
    return {"syncs": counter.count, "steps": counter.steps}


def _ratio(cfg: Any, iters: int, warmup: int) -> dict[str, Any]:
    trainer = measure_trainer(cfg, iters, warmup)
    loop = measure_loop(cfg, iters, warmup)
    return {"trainer_images_per_s": trainer, "loop_images_per_s": loop, "ratio": trainer / loop}


def _evaluate(cfg: Any) -> dict[str, Any]:
    model = build_model(with_num_classes(cfg, 751))
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = DefaultTrainer.test(cfg, model)
    seconds = time.perf_counter() - start
    return {"eval_seconds": seconds, "mAP": results["Market1501"]["mAP"]}


def _features(sizes: tuple[int, int, int], cuda: bool) -> dict[str, Any]:
    num_query, num_gallery, dim = sizes
    device = torch.device("cuda" if cuda else "cpu")
    g = torch.Generator(device=device).manual_seed(0)
    n = num_query + num_gallery
    features = torch.randn(n, dim, device=device, generator=g)
    pids = torch.randint(0, 3060, (n,), device=device, generator=g)
    camids = torch.randint(0, 15, (n,), device=device, generator=g)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = score_features(features, pids, camids, num_query)
    return {"metric_seconds": time.perf_counter() - start, "mAP": results["mAP"]}


def _nccl(cfg: Any, iters: int, warmup: int, work: str) -> dict[str, Any]:
    out = os.path.join(work, "nccl.json")
    launch(_nccl_worker, num_gpus_per_machine=2, args=(cfg, iters, warmup, out))
    with open(out, encoding="utf-8") as f:
        return json.load(f)


if __name__ == "__main__":
    main()
