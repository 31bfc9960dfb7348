"""Planning a table's runs: names, output folders, override order, sharing, the quick setting."""

import os
import shlex

import pytest

from reid.config import load_config
from reid.solver.stages import build_training_plan
from reid.tables import QUICK_OPTS, load_table, plan_table, quick_opts
from reid.tables.plan import format_opt_value
from reid.tables.record import default_papers_dir

PAPERS = default_papers_dir()


def test_plan_has_one_run_per_config_and_dataset(tmp_path):
    record = load_table("ratio_table1")
    plan = plan_table(record, str(tmp_path))
    assert list(plan.runs) == [
        f"ratio/{cfg}/{ds}"
        for cfg in ("nsl", "nsl_ratio", "nsl_ohem", "nsl_ratio_ohem")
        for ds in ("Market1501", "DukeMTMC")
    ]
    run = plan.runs["ratio/nsl_ohem/DukeMTMC"]
    assert run.output_dir == str(tmp_path / "ratio" / "nsl_ohem" / "DukeMTMC")
    cfg = run.load()
    assert list(cfg.DATASETS.NAMES) == ["DukeMTMC"] and list(cfg.DATASETS.TESTS) == ["DukeMTMC"]
    assert cfg.MODEL.LOSSES.CE.OHEM_RATIO == 0.2 and cfg.OUTPUT_DIR == run.output_dir
    assert run.max_epoch == 150
    # Both metrics of a dataset come from the same run; the quoted rows have none.
    ohem = [r.name for r in record.rows].index("Baseline + OHEM")
    assert plan.cells[(ohem, 2)].run == plan.cells[(ohem, 3)].run == "ratio/nsl_ohem/DukeMTMC"
    assert (plan.cells[(ohem, 2)].metric, plan.cells[(ohem, 3)].metric) == ("mAP", "Rank-1")
    assert plan.cells[(0, 0)].run is None and record.rows[0].name == "IDE [7] (quoted)"


def test_dataset_layer_options_reach_the_config(tmp_path):
    plan = plan_table(load_table("ratio_table2"), str(tmp_path))
    assert plan.runs["ratio/nsl/CUHK03-labeled"].load().DATASETS.CUHK03.LABELED is True
    assert plan.runs["ratio/nsl/CUHK03-detected"].load().DATASETS.CUHK03.LABELED is False


def test_vehicleid_columns_share_one_run_with_two_test_sets(tmp_path):
    plan = plan_table(load_table("adasp"), str(tmp_path), datasets=["VehicleID"])
    assert len(plan.runs) == 6
    small, medium = plan.cells[(2, 4)], plan.cells[(2, 5)]
    assert small.run == medium.run == "adasp/VehicleID/norm_single_adasp/VehicleID"
    assert (small.test, medium.test) == ("SmallVehicleID", "MediumVehicleID")
    cfg = plan.runs[small.run].load()
    assert list(cfg.DATASETS.TESTS) == ["SmallVehicleID", "MediumVehicleID", "LargeVehicleID"]
    assert cfg.MODEL.LOSSES.SP.TEMP == 0.05 and cfg.SOLVER.IMS_PER_BATCH == 512


def test_requested_datasets_only_and_unknown_dataset_is_an_error(tmp_path):
    record = load_table("ratio_table1")
    plan = plan_table(record, str(tmp_path), datasets=["DukeMTMC"])
    assert [r.dataset for r in plan.runs.values()] == ["DukeMTMC"] * 4
    nsl = [r.name for r in record.rows].index("Baseline (NSL)")
    assert plan.cells[(nsl, 0)].run is None and plan.cells[(nsl, 2)].run == "ratio/nsl/DukeMTMC"
    with pytest.raises(
        ValueError,
        match=r"unknown dataset\(s\) \['Market'\]; its datasets are \['Market1501', 'DukeMTMC'\]",
    ):
        plan_table(record, str(tmp_path), datasets=["Market"])


def test_reference_rows_and_partial_rows_have_no_runs(tmp_path):
    plan = plan_table(load_table("unified_table4"), str(tmp_path))
    # Baseline and UniCls on 4 datasets, Bag of Tricks on Market1501 and DukeMTMC.
    assert len(plan.runs) == 10
    assert "survey/ce_triplet_center/Market1501" in plan.runs
    assert "survey/ce_triplet_center/MSMT17" not in plan.runs
    assert all(plan.cells[(0, j)].run is None for j in range(8))


def test_user_overrides_come_last(tmp_path):
    plan = plan_table(
        load_table("ratio_table1"),
        str(tmp_path),
        opts=["DATASETS.NAMES", "('DukeMTMC',)", "SOLVER.MAX_EPOCH", "3"],
    )
    run = plan.runs["ratio/nsl/Market1501"]
    cfg = run.load()
    assert list(cfg.DATASETS.NAMES) == ["DukeMTMC"] and list(cfg.DATASETS.TESTS) == ["Market1501"]
    assert cfg.SOLVER.MAX_EPOCH == 3 and run.max_epoch == 3


def test_command_line_reproduces_the_run_config(tmp_path):
    plan = plan_table(
        load_table("unified_table3"), str(tmp_path), quick=True, opts=["MODEL.DEVICE", "cpu"]
    )
    run = plan.runs["unified/mpn16_tri_cls/Synthetic"]
    argv = shlex.split(run.command(resume=True))
    assert argv[:5] == [
        "python",
        "tools/train_net.py",
        "--config-file",
        os.path.relpath(run.config),
        "--resume",
    ]
    from_command = load_config(run.config, argv[5:])
    assert from_command.dump() == run.load().dump()


@pytest.mark.parametrize(
    "value",
    [
        "cpu",
        "18x",
        "1e-5",
        "3",
        3,
        0.5,
        True,
        None,
        ["Synthetic"],
        [{"NAME": "a", "LOSSES": {"X": 1.0}}],
    ],
)
def test_format_opt_value_round_trips_through_load_config_parsing(value):
    import ast

    text = format_opt_value(value)
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        parsed = text
    assert parsed == value


# ---- the quick setting -------------------------------------------------------------------------


def test_quick_plan_runs_each_config_once_on_the_synthetic_set(tmp_path):
    plan = plan_table(load_table("ratio_table3"), str(tmp_path), quick=True)
    assert len(plan.runs) == 11
    assert all(name.endswith("/Synthetic") for name in plan.runs)
    assert {plan.cells[(0, j)].run for j in range(8)} == {"ratio/table3/lmcl_m0.01/Synthetic"}
    assert {plan.cells[(0, j)].test for j in range(8)} == {"Synthetic"}
    cfg = plan.runs["ratio/table3/lmcl_m0.01/Synthetic"].load()
    for key, value in QUICK_OPTS.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert (list(node) if isinstance(node, (list, tuple)) else node) == value, key
    # What the row is about survives: the classifier, its margin, OHEM, the test-time flip.
    assert (cfg.MODEL.HEADS.CLS_LAYER, cfg.MODEL.HEADS.MARGIN, cfg.MODEL.LOSSES.CE.OHEM_RATIO) == (
        "CosFace",
        0.01,
        0.2,
    )
    assert cfg.TEST.FLIP.ENABLED and cfg.MODEL.HEADS.NAME == "RatioHead"


def test_quick_shrinks_every_stage_to_one_epoch_and_keeps_the_plan():
    cfg = load_config(os.path.join(PAPERS, "unified", "mpn16_tri_cls.yml"))
    opts = quick_opts(cfg)
    assert opts["SOLVER.MAX_EPOCH"] == 3
    stages = opts["SOLVER.STAGES"]
    assert [s["EPOCHS"] for s in stages] == [1, 1, 1]
    assert [s["LOSSES"] for s in stages] == [dict(s["LOSSES"]) for s in cfg.SOLVER.STAGES]
    assert stages[1]["TRAINABLE"] == list(cfg.SOLVER.STAGES[1]["TRAINABLE"])
    assert stages[2]["SOLVER"] == {
        "BASE_LR": 0.00008,
        "SCHED": "MultiStepLR",
        "STEPS": [60],
        "GAMMA": 0.1,
        "WARMUP_EPOCHS": 0,
        "WARMUP_ITERS": 0,
    }
    # The run's own 20-epoch warm-up becomes one iteration.
    assert (opts["SOLVER.WARMUP_EPOCHS"], opts["SOLVER.WARMUP_ITERS"]) == (0, 1)
    shrunk = load_config(
        os.path.join(PAPERS, "unified", "mpn16_tri_cls.yml"),
        [t for k, v in opts.items() for t in (k, format_opt_value(v))],
    )
    plan = build_training_plan(shrunk)
    assert [(s.start_epoch, s.epochs) for s in plan] == [(0, 1), (1, 1), (2, 1)]
    assert plan[2].solver_overrides["BASE_LR"] == 0.00008


def test_quick_shrinks_warmup_delay_and_freezing_in_iterations():
    cfg = load_config(os.path.join(PAPERS, "adasp", "VeRi", "norm_single_adasp.yml"))
    assert (
        cfg.SOLVER.WARMUP_ITERS,
        cfg.SOLVER.FREEZE_ITERS,
        cfg.SOLVER.DELAY_EPOCHS,
        cfg.SOLVER.MAX_EPOCH,
    ) == (1500, 1500, 30, 60)
    opts = quick_opts(cfg)
    assert {
        k: opts[k]
        for k in (
            "SOLVER.WARMUP_ITERS",
            "SOLVER.FREEZE_ITERS",
            "SOLVER.DELAY_EPOCHS",
            "SOLVER.MAX_EPOCH",
        )
    } == {
        "SOLVER.WARMUP_ITERS": 1,
        "SOLVER.FREEZE_ITERS": 1,
        "SOLVER.DELAY_EPOCHS": 0,
        # fastreid's cosine starts after the epoch the warm-up ends in: one more epoch
        "SOLVER.MAX_EPOCH": 2,
    }
    assert "SOLVER.STAGES" not in opts
    no_warmup = load_config(None, ["SOLVER.WARMUP_EPOCHS", "0", "SOLVER.WARMUP_ITERS", "0"])
    assert quick_opts(no_warmup)["SOLVER.WARMUP_ITERS"] == 0
