"""The quick setting: any paper config shrunk to a tiny run on the synthetic data.

It keeps each config's architecture, losses and training plan and shrinks what costs time: a tiny
synthetic dataset (the test suite's), ResNet-18 without pretrained weights, 96x32 inputs (tall
enough for MGN's three stripes cut with torch.chunk, 2 rows each), P = 4 x K = 4, no AMP, no loader
processes. The schedule shrinks consistently, from the loaded config:

- every training stage lasts 1 epoch (a run without stages: 1 epoch, or 2 for a cosine decay
  that starts after the warm-up, fastreid's SCHED_CLOCK "after_warmup", so that the decay has an
  epoch), so MAX_EPOCH = the number of stages;
- a warm-up (epochs or iterations) becomes 1 iteration, a cosine delay 0 epochs, FREEZE_ITERS at
  most 1 (so freezing and its release both run), in the run's and in every stage's schedule;
- MultiStepLR steps stay as they are (they fall after the end of the tiny run);
- evaluation and the checkpoint only after the last epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yacs.config import CfgNode

# The synthetic set of the test suite (tests/conftest.py), so a test session generates it once.
QUICK_DATASET = "Synthetic"
QUICK_OPTS: dict[str, Any] = {
    "DATASETS.NAMES": [QUICK_DATASET],
    "DATASETS.TESTS": [QUICK_DATASET],
    "DATASETS.SYNTHETIC.NUM_TRAIN_IDS": 6,
    "DATASETS.SYNTHETIC.NUM_TEST_IDS": 5,
    "DATASETS.SYNTHETIC.IMGS_PER_ID": 4,
    "DATASETS.SYNTHETIC.IMAGE_SIZE": [32, 16],
    "DATASETS.SYNTHETIC.NUM_DISTRACTORS": 3,
    "DATASETS.SYNTHETIC.NUM_JUNK": 2,
    "MODEL.BACKBONE.DEPTH": "18x",
    "MODEL.BACKBONE.FEAT_DIM": 0,
    "MODEL.BACKBONE.PRETRAIN": False,
    "MODEL.BACKBONE.PRETRAIN_PATH": "",
    "INPUT.SIZE_TRAIN": [96, 32],
    "INPUT.SIZE_TEST": [96, 32],
    "INPUT.RESIZE_THEN_CROP.RESIZE": [108, 36],
    "INPUT.PADDING.SIZE": 4,
    "DATALOADER.NUM_INSTANCE": 4,
    "DATALOADER.NUM_WORKERS": 0,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.AMP.ENABLED": False,
    "SOLVER.CHECKPOINT_PERIOD": 0,
    "TEST.EVAL_PERIOD": 0,
    "TEST.GALLERY_DRAWS": 1,  # the synthetic gallery is fixed (VehicleID's configs ask for 10)
    "TEST.IMS_PER_BATCH": 64,
    "CUDNN_BENCHMARK": False,
    "LOG_PERIOD": 1,
}


def _shrunk_schedule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """Warm-up, cosine delay and freezing of one schedule (the run's SOLVER or a stage's) shrunk."""
    out: dict[str, Any] = {}
    warmup = (
        int(schedule.get("WARMUP_EPOCHS", 0) or 0) > 0
        or int(schedule.get("WARMUP_ITERS", 0) or 0) > 0
    )
    if "WARMUP_EPOCHS" in schedule:
        out["WARMUP_EPOCHS"] = 0
    if "WARMUP_ITERS" in schedule or warmup:
        out["WARMUP_ITERS"] = 1 if warmup else 0
    if "DELAY_EPOCHS" in schedule:
        out["DELAY_EPOCHS"] = 0
    if "FREEZE_ITERS" in schedule:
        out["FREEZE_ITERS"] = min(int(schedule["FREEZE_ITERS"]), 1)
    return out


def _cosine_after_warmup(solver: CfgNode, opts: Mapping[str, Any]) -> bool:
    warmup = int(opts.get("SOLVER.WARMUP_ITERS", 0)) > 0
    return warmup and solver.SCHED_CLOCK == "after_warmup" and solver.SCHED == "CosineAnnealingLR"


def quick_schedule_opts(cfg: CfgNode) -> dict[str, Any]:
    """Overrides that shrink ``cfg``'s training plan to 1 epoch per stage (see the module doc).

    Args:
        cfg: The row's config with its dataset layer.
    """
    solver = cfg.SOLVER
    opts = {f"SOLVER.{k}": v for k, v in _shrunk_schedule(solver).items()}
    stages: list[dict[str, Any]] = []
    for stage in solver.STAGES:
        stage = dict(stage)
        stage["EPOCHS"] = 1
        if stage.get("SOLVER"):
            stage["SOLVER"] = {**dict(stage["SOLVER"]), **_shrunk_schedule(stage["SOLVER"])}
        stages.append(stage)
    if stages:
        opts["SOLVER.STAGES"] = stages
    opts["SOLVER.MAX_EPOCH"] = len(stages) or (2 if _cosine_after_warmup(solver, opts) else 1)
    return opts


def quick_opts(cfg: CfgNode) -> dict[str, Any]:
    """All overrides of the quick setting for ``cfg`` (the row config with its dataset layer).

    Returns:
        Config key -> value: ``QUICK_OPTS`` and the shrunk schedule.
    """
    return {**QUICK_OPTS, **quick_schedule_opts(cfg)}
