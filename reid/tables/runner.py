"""Running a table's runs: which are finished, which datasets are there, training the rest
in-process.

A run is finished when its final weights (OUTPUT_DIR/model_final.pth, or the record that they were
deleted on purpose, see :func:`drop_checkpoints`) and OUTPUT_DIR/results.json of the run's last
epoch (SOLVER.MAX_EPOCH) both exist; it is then skipped. A run with a checkpoint resumes from it.
A dataset that cannot be found is reported and its runs are skipped; a run that fails is reported
and the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from reid.config import load_config
from reid.data.datasets import DATASET_REGISTRY
from reid.data.datasets.bases import DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.build import resolve_root
from reid.engine.defaults import read_results
from reid.utils.checkpoint import LAST_CHECKPOINT
from reid.utils.file_io import atomic_write_json
from reid.utils.run_lock import release_output_dir

from .plan import Run, TablePlan, format_opt_value, layer_opts

logger = logging.getLogger(__name__)

# Run states.
FINISHED = "finished"
PARTIAL = "partial"  # a checkpoint or intermediate results: resumed
NEW = "new"
FAILED = "failed"
SKIPPED = "skipped"  # its dataset is missing


FINAL_WEIGHTS = "model_final.pth"
WEIGHTS_DROPPED = "weights_dropped.json"  # what drop_checkpoints deleted


def _final_weights_exist(output_dir: str) -> bool:
    """model_final.pth is there, or drop_checkpoints deleted it after the run finished."""
    if os.path.isfile(os.path.join(output_dir, FINAL_WEIGHTS)):
        return True
    try:
        with open(os.path.join(output_dir, WEIGHTS_DROPPED), encoding="utf-8") as f:
            return FINAL_WEIGHTS in json.load(f).get("removed", [])
    except (OSError, ValueError, AttributeError):
        return False


def run_status(run: Run) -> str:
    """FINISHED (final weights and final results), PARTIAL or NEW from what OUTPUT_DIR holds."""
    results = read_results(run.output_dir)
    final_results = results is not None and results.get("epoch") == run.max_epoch
    if final_results and _final_weights_exist(run.output_dir):
        return FINISHED
    folder = run.output_dir
    checkpoints = os.path.isdir(folder) and any(
        n == LAST_CHECKPOINT or (n.startswith("model_") and n.endswith(".pth"))
        for n in os.listdir(folder)
    )
    return PARTIAL if results is not None or checkpoints else NEW


def check_dataset(opts: Sequence[str]) -> str | None:
    """Why the datasets of DATASETS.NAMES and DATASETS.TESTS cannot be read with ``opts``.

    Args:
        opts: KEY VALUE overrides: the dataset layer's keys, DATASETS.ROOT, ...

    Returns:
        The reader's message for the first dataset that cannot be read, or None.
    """
    cfg = load_config(None, list(opts))
    root = resolve_root(cfg)
    for name in dict.fromkeys([*cfg.DATASETS.NAMES, *cfg.DATASETS.TESTS]):
        try:
            DATASET_REGISTRY.get(name)(cfg, root)
        except (DatasetNotFoundError, DatasetFormatError) as e:
            return str(e)
    return None


def missing_datasets(plan: TablePlan, opts: Sequence[str] = ()) -> dict[str, str]:
    """Dataset key -> reason, for the requested datasets of ``plan`` that cannot be read.

    Args:
        plan: The table's runs. The quick setting's synthetic data is generated on first use, so
            it is never missing.
        opts: The user's KEY VALUE overrides (DATASETS.ROOT, ...).
    """
    if plan.quick:
        return {}
    missing = {}
    for key in plan.datasets:
        layer = [
            t
            for k, v in layer_opts(plan.record.datasets[key].layer)
            for t in (k, format_opt_value(v))
        ]
        reason = check_dataset(layer + list(opts))
        if reason is not None:
            missing[key] = reason
    return missing


def train_run(run: Run) -> None:
    """Train ``run`` in this process, resuming from its last checkpoint if there is one."""
    from reid.engine import DefaultTrainer, default_setup

    cfg = default_setup(run.load())
    try:
        trainer = DefaultTrainer(cfg)
        # A run whose training finished but whose final evaluation did not (or whose
        # results.json is gone) evaluates its final checkpoint when resumed.
        trainer.resume_or_load(resume=True)
        trainer.train()
    finally:
        release_output_dir(cfg.OUTPUT_DIR)


def drop_checkpoints(output_dir: str) -> list[str]:
    """Delete the weights of a finished run (``*.pth``, ``last_checkpoint``); results and logs stay.

    For quick runs, whose weights are worth nothing and would fill a laptop's disk (an MGN quick run
    writes two checkpoints of several hundred MB). The removed names are recorded in
    ``weights_dropped.json``, so the run still counts as finished. Returns the removed file names.
    """
    removed = []
    for name in sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []:
        if name.endswith(".pth") or name == LAST_CHECKPOINT:
            os.remove(os.path.join(output_dir, name))
            removed.append(name)
    if removed:
        record = os.path.join(output_dir, WEIGHTS_DROPPED)
        try:
            with open(record, encoding="utf-8") as f:
                earlier = json.load(f).get("removed", [])
        except (OSError, ValueError, AttributeError):
            earlier = []
        atomic_write_json(record, {"removed": sorted(set(earlier) | set(removed))})
    return removed


@dataclass
class RunOutcome:
    """What became of a run: its state (FINISHED, PARTIAL, FAILED, SKIPPED) and any error."""

    run: Run
    status: str
    error: str = ""


def execute(
    runs: Sequence[Run],
    skip_datasets: Iterable[str] = (),
    train: Callable[[Run], None] = train_run,
    keep_checkpoints: bool = True,
) -> list[RunOutcome]:
    """Train every unfinished run of ``runs``, skipping finished ones and those of missing data.

    A run that raises is reported as FAILED with its error and the next run starts.

    Args:
        runs: The runs, trained in order.
        skip_datasets: Dataset keys whose runs are skipped (their data is missing).
        train: Trains one run (default: in this process, resuming from its checkpoint).
        keep_checkpoints: False: delete the weights of every finished run
            (``drop_checkpoints``).

    Returns:
        One outcome per run, in order.
    """
    skip = set(skip_datasets)
    outcomes = []
    for k, run in enumerate(runs, start=1):
        if run.dataset in skip:
            outcomes.append(RunOutcome(run, SKIPPED, "dataset missing"))
            continue
        status = run_status(run)
        if status == FINISHED:
            logger.info("[%d/%d] %s: finished, skipped", k, len(runs), run.name)
            outcomes.append(RunOutcome(run, FINISHED))
            if not keep_checkpoints:
                drop_checkpoints(run.output_dir)
            continue
        logger.info(
            "[%d/%d] %s: %s",
            k,
            len(runs),
            run.name,
            "resuming" if status == PARTIAL else "training",
        )
        try:
            train(run)
        except Exception as e:  # noqa: BLE001 - one broken run must not stop the table
            logger.error("Run %s failed:\n%s", run.name, traceback.format_exc())
            outcomes.append(RunOutcome(run, FAILED, f"{type(e).__name__}: {e}"))
            continue
        status = run_status(run)
        outcomes.append(RunOutcome(run, status))
        if status == FINISHED and not keep_checkpoints:
            drop_checkpoints(run.output_dir)
    return outcomes
