"""Every config under configs/papers loads; every row config trains and evaluates in quick setting.

The run test is what ``tools/reproduce.py --quick`` does for one cell: the row config, the quick
setting (tiny synthetic set, ResNet-18, 96x32, 1 epoch per stage), then the test's overrides; one
in-process run per config.
"""

import glob
import json
import os
import shutil

import pytest
import yaml

from reid.config import load_config
from reid.modeling.losses import LOSS_REGISTRY
from reid.solver.stages import build_training_plan
from reid.tables import list_tables, load_table, plan_table
from reid.tables.record import default_papers_dir, load_yaml_strict
from reid.tables.runner import read_results, train_run

PAPERS = default_papers_dir()
ALL_FILES = sorted(p for p in glob.glob(os.path.join(PAPERS, "**", "*.yml"), recursive=True))
LAYERS = sorted(glob.glob(os.path.join(PAPERS, "datasets", "*.yml")))


def _row_configs():
    """config path -> the name of a table that uses it (the first, in name order)."""
    found = {}
    for name in list_tables():
        for row in load_table(name).rows:
            for path in row.configs.values():
                found.setdefault(path, name)
    return found


ROW_CONFIGS = _row_configs()


def _rel(path):
    return os.path.relpath(path, PAPERS)


def test_the_papers_folder_holds_every_table_config():
    # 24 ratio-paper rows (4 + 10 margins + 10 sweep points), 26 unified-view rows (17 of Tables
    # 2-3, 8 with the hard-margin triplet of Eq. 3, Meta N-tuplet), 30 AdaSP (3 losses x single/CE
    # x 5 datasets), 5 survey combinations.
    assert len(ROW_CONFIGS) == 85
    families = sorted({_rel(p).split(os.sep)[0] for p in ROW_CONFIGS})
    assert families == ["adasp", "ratio", "survey", "unified"]


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_config_file_loads_and_has_no_duplicate_key(path):
    load_yaml_strict(path)  # raises on a key written twice (safe_load would keep the last silently)
    cfg = load_config(path)
    assert cfg.SOLVER.MAX_EPOCH > 0


def test_every_row_config_file_is_a_cell_of_some_table():
    rows = [p for p in ALL_FILES if not os.path.basename(p).startswith("Base-") and p not in LAYERS]
    unused = [_rel(p) for p in rows if p not in ROW_CONFIGS]
    assert unused == []


def test_duplicate_key_is_rejected(tmp_path):
    path = tmp_path / "dup.yml"
    path.write_text("MODEL:\n  LOSSES:\n    NAME: [A]\nMODEL:\n  BACKBONE:\n    DEPTH: 18x\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'MODEL'"):
        load_yaml_strict(str(path))


@pytest.mark.parametrize("path", sorted(ROW_CONFIGS), ids=_rel)
def test_full_size_training_plan_is_valid(path):
    cfg = load_config(path)
    plan = build_training_plan(cfg)
    assert sum(stage.epochs for stage in plan) == cfg.SOLVER.MAX_EPOCH
    for stage in plan:
        for name in stage.loss_weights or {}:
            assert name in cfg.MODEL.LOSSES.NAME


def test_unified_mpn_plan_is_the_papers_three_stages():
    cfg = load_config(os.path.join(PAPERS, "unified", "mpn16_tri_cls.yml"))
    plan = build_training_plan(cfg)
    assert [(s.start_epoch, s.end_epoch) for s in plan] == [(0, 360), (360, 480), (480, 600)]
    assert plan[0].loss_weights == {"CrossEntropyLoss": 1.0, "PNTupletLoss": 1.0}
    assert plan[1].loss_weights == {"CrossEntropyLoss": 1.0, "MPNTupletLoss": 1.0}
    assert plan[1].trainable == ("heads\\.classifier\\.", "loss_set\\.losses\\.MPNTupletLoss\\.")
    assert plan[2].loss_weights == {
        "CrossEntropyLoss": 1.0,
        "MPNTupletLoss": 1.0,
        "TripletLoss": 1.0,
    }
    assert plan[2].trainable == ()


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(ROW_CONFIGS), ids=_rel)
def test_row_config_trains_and_evaluates_in_the_quick_setting(path, tmp_path, synthetic_root):
    record = load_table(ROW_CONFIGS[path])
    opts = ["DATASETS.ROOT", synthetic_root, "MODEL.DEVICE", "cpu", "LOG_PERIOD", "1"]
    plan = plan_table(record, str(tmp_path), quick=True, opts=opts)
    (run,) = [r for r in plan.runs.values() if r.config == path]
    cfg = run.load()
    cosine_after_warmup = cfg.SOLVER.SCHED_CLOCK == "after_warmup" and (
        cfg.SOLVER.SCHED == "CosineAnnealingLR" and cfg.SOLVER.WARMUP_ITERS > 0
    )
    stages = len(cfg.SOLVER.STAGES) or (2 if cosine_after_warmup else 1)
    assert cfg.SOLVER.MAX_EPOCH == stages and cfg.MODEL.BACKBONE.DEPTH == "18x"

    try:
        train_run(run)
        _check_run(run, cfg, stages)
    finally:
        shutil.rmtree(
            run.output_dir, ignore_errors=True
        )  # up to ~750 MB of checkpoints per MGN run


def _check_run(run, cfg, stages):
    results = read_results(run.output_dir)
    assert results["epoch"] == stages
    metrics = results["results"]["Synthetic"]
    assert 0.0 <= metrics["mINP"] <= metrics["mAP"] <= 100.0
    assert metrics["Rank-1"] <= metrics["Rank-5"] <= metrics["Rank-10"]
    assert os.path.isfile(os.path.join(run.output_dir, "model_final.pth"))
    # Every loss the config builds was computed and logged (MGN logs them per head or feature
    # group).
    with open(os.path.join(run.output_dir, "metrics.json")) as f:
        logged = {key for line in f for key in json.loads(line)}
    for name in cfg.MODEL.LOSSES.NAME:
        log_name = LOSS_REGISTRY.get(name).log_name
        assert any(key == log_name or key.startswith(log_name + "_") for key in logged), (
            name,
            sorted(logged),
        )
