"""Run states, the run loop (skip, resume, failures, missing data), the report's numbers and
differences."""

import json
import os

import pytest

from reid.tables import (
    collect,
    execute,
    failed_runs,
    load_table,
    missing_datasets,
    plan_table,
    run_status,
    to_markdown,
)
from reid.tables.report import MISSING, NO_METRIC, NO_NUMBER, NOT_RUN
from reid.tables.runner import FAILED, FINISHED, NEW, PARTIAL, SKIPPED, check_dataset


def _write_results(run, epoch, metrics, test=None, final_weights=True):
    """results.json of ``epoch``; with ``final_weights``, model_final.pth when it is the last."""
    os.makedirs(run.output_dir, exist_ok=True)
    payload = {"epoch": epoch, "results": {test or run.dataset: metrics}}
    with open(os.path.join(run.output_dir, "results.json"), "w") as f:
        json.dump(payload, f)
    if final_weights and epoch == run.max_epoch:
        open(os.path.join(run.output_dir, "model_final.pth"), "w").close()


@pytest.fixture
def table1(tmp_path):
    return plan_table(load_table("ratio_table1"), str(tmp_path / "runs"))


def test_run_status_from_output_dir(table1):
    run = table1.runs["ratio/nsl/Market1501"]
    assert run_status(run) == NEW
    os.makedirs(run.output_dir)
    with open(os.path.join(run.output_dir, "last_checkpoint"), "w") as f:
        f.write("model_0049.pth")
    assert run_status(run) == PARTIAL
    _write_results(run, 50, {"mAP": 10.0})
    assert run_status(run) == PARTIAL
    _write_results(run, 150, {"mAP": 10.0}, final_weights=False)
    # Killed between the final results.json and model_final.pth: not finished, it resumes.
    assert run_status(run) == PARTIAL
    _write_results(run, 150, {"mAP": 10.0})
    assert run_status(run) == FINISHED
    os.remove(os.path.join(run.output_dir, "last_checkpoint"))
    os.remove(os.path.join(run.output_dir, "model_final.pth"))
    assert run_status(run) == PARTIAL  # final results without any weights
    with open(os.path.join(run.output_dir, "model_0150.pth"), "w") as f:
        f.write("a checkpoint without last_checkpoint")
    assert run_status(run) == PARTIAL
    open(os.path.join(run.output_dir, "model_final.pth"), "w").close()
    with open(os.path.join(run.output_dir, "results.json"), "w") as f:
        f.write("{broken")
    assert (
        run_status(run) == PARTIAL
    )  # a checkpoint is there; the unreadable results are not trusted


def test_execute_skips_finished_and_missing_resumes_partial_and_survives_a_failure(table1):
    runs = list(table1.runs.values())
    _write_results(runs[0], 150, {"mAP": 1.0})  # nsl/Market1501 finished
    os.makedirs(runs[2].output_dir)  # nsl_ratio/Market1501 interrupted
    open(os.path.join(runs[2].output_dir, "last_checkpoint"), "w").close()
    trained = []

    def fake_train(run):
        trained.append((run.name, run_status(run)))
        if run.name == "ratio/nsl_ohem/Market1501":
            raise RuntimeError("CUDA out of memory")
        _write_results(run, run.max_epoch, {"mAP": 2.0})

    outcomes = execute(runs, skip_datasets=["DukeMTMC"], train=fake_train)
    assert trained == [
        ("ratio/nsl_ratio/Market1501", PARTIAL),
        ("ratio/nsl_ohem/Market1501", NEW),
        ("ratio/nsl_ratio_ohem/Market1501", NEW),
    ]
    assert [o.status for o in outcomes] == [
        FINISHED,
        SKIPPED,
        FINISHED,
        SKIPPED,
        FAILED,
        SKIPPED,
        FINISHED,
        SKIPPED,
    ]
    assert failed_runs(outcomes) == {
        "ratio/nsl_ohem/Market1501": "RuntimeError: CUDA out of memory"
    }


def test_execute_without_keep_checkpoints_drops_weights_of_finished_runs_only(table1):
    runs = list(table1.runs.values())[:3]
    for run in runs:
        os.makedirs(run.output_dir)
        for name in ("model_final.pth", "model_0004.pth", "last_checkpoint", "log.txt"):
            open(os.path.join(run.output_dir, name), "w").close()
    _write_results(runs[0], 150, {"mAP": 1.0})

    def train(run):
        if run is runs[1]:
            _write_results(run, run.max_epoch, {"mAP": 2.0})
        else:
            _write_results(run, 50, {"mAP": 2.0})  # stopped early: still partial

    outcomes = execute(runs, train=train, keep_checkpoints=False)
    assert [o.status for o in outcomes] == [FINISHED, FINISHED, PARTIAL]
    for run in runs[:2]:
        assert sorted(os.listdir(run.output_dir)) == [
            "log.txt",
            "results.json",
            "weights_dropped.json",
        ]
        record = json.load(open(os.path.join(run.output_dir, "weights_dropped.json")))
        assert record == {"removed": ["last_checkpoint", "model_0004.pth", "model_final.pth"]}
        # The deleted final weights are recorded, so the run still counts as finished.
        assert run_status(run) == FINISHED
    assert "model_final.pth" in os.listdir(runs[2].output_dir) and "last_checkpoint" in os.listdir(
        runs[2].output_dir
    )


def test_missing_datasets_are_reported_with_the_reader_message(table1, tmp_path):
    empty = str(tmp_path / "no-data")
    os.makedirs(empty)
    missing = missing_datasets(table1, ["DATASETS.ROOT", empty])
    assert sorted(missing) == ["DukeMTMC", "Market1501"]
    assert (
        "Market1501: dataset folder not found" in missing["Market1501"]
        and empty in missing["Market1501"]
    )
    assert (
        missing_datasets(
            plan_table(table1.record, str(tmp_path), quick=True), ["DATASETS.ROOT", empty]
        )
        == {}
    )


def test_check_dataset_reads_a_present_dataset(synthetic_root, tiny_opts):
    assert check_dataset(tiny_opts) is None
    assert "dataset folder not found" in check_dataset(
        ["DATASETS.NAMES", "('DukeMTMC',)", "DATASETS.ROOT", synthetic_root]
    )


def test_report_numbers_differences_and_marks(table1):
    runs = table1.runs
    _write_results(runs["ratio/nsl/Market1501"], 150, {"mAP": 80.0, "Rank-1": 93.125})
    _write_results(runs["ratio/nsl/DukeMTMC"], 50, {"mAP": 60.5, "Rank-1": 80.0})  # intermediate
    _write_results(runs["ratio/nsl_ratio/Market1501"], 150, {"Rank-1": 90.0})  # no mAP
    _write_results(runs["ratio/nsl_ohem/Market1501"], 150, {"mAP": 1.0}, test="Other")
    result = collect(
        table1,
        missing={"DukeMTMC": "DukeMTMC: dataset folder not found: x; expected layout: y"},
        failed={"ratio/nsl_ratio_ohem/Market1501": "ValueError: bad\nmore"},
    )
    # The paper's own rows follow the 12 quoted ones (no number of ours).
    first = result.rows.index("Baseline (NSL)")
    assert first == 12 and all(cell.mark == NO_NUMBER for cell in result.cells[0])
    # Baseline: Market finished, Duke missing (the missing mark wins over its intermediate
    # results).
    c = result.cells[first]
    assert (c[0].paper, c[0].ours, round(c[0].delta, 6), c[0].final) == (81.65, 80.0, -1.65, True)
    assert (c[1].ours, round(c[1].delta, 6)) == (93.125, 0.815)
    assert (c[2].ours, c[2].mark) == (None, MISSING)
    assert result.cells[first + 1][0].mark == NO_METRIC and result.cells[first + 1][1].ours == 90.0
    assert result.cells[first + 2][0].mark == NO_METRIC  # results of another test set
    assert result.cells[first + 3][0].mark == "failed"
    assert all(cell.draws == 1 for row in result.cells for cell in row)
    assert "Gallery draws" not in to_markdown(result)

    md = to_markdown(result)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    assert header.split(" | ")[1:4] == ["Market1501 mAP paper", "ours", "Δ"]
    row0 = next(line for line in lines if line.startswith("| Baseline (NSL)"))
    assert [c.strip() for c in row0.split("|")[1:-1]] == [
        "Baseline (NSL)",
        "81.65",
        "80.00",
        "-1.65",
        "92.31",
        "93.12",
        "+0.81",
        "71.10",
        MISSING,
        "",
        "83.44",
        MISSING,
        "",
    ]
    assert "- DukeMTMC: dataset folder not found: x\n" in md and "expected layout" not in md
    assert "- ratio/nsl_ratio_ohem/Market1501: ValueError: bad" in md and "more" not in md
    assert "Single query" in md  # the record's notes


def test_report_marks_intermediate_results_and_rows_without_config(tmp_path):
    plan = plan_table(load_table("unified_table4"), str(tmp_path))
    run = plan.runs["unified/cls_tri_cosine_all/Market1501"]
    _write_results(run, 120, {"Rank-1": 90.0, "mAP": 80.04})
    result = collect(plan)
    names = result.rows
    base = result.cells[names.index("Baseline (Tri. + Cls.)")]
    assert (base[2].ours, base[2].final, round(base[3].delta, 2)) == (90.0, False, -7.26)
    assert base[0].mark == NOT_RUN
    ido = result.cells[0]
    assert ido[0].mark == NO_NUMBER and ido[0].paper is None and ido[2].paper == 84.9
    md = to_markdown(result)
    row = next(line for line in md.splitlines() if line.startswith("| Baseline"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[7:10] == ["94.7", "90.0*", "-4.7"] and cells[10:13] == ["87.3", "80.0*", "-7.3"]
    ido_row = next(line for line in md.splitlines() if line.startswith("| IDO-Tri"))
    assert [c.strip() for c in ido_row.split("|")[1:-1]][1:7] == ["—", "—", "", "—", "—", ""]


def test_report_json_round_trips(table1):
    result = collect(table1)
    data = json.loads(json.dumps(result.to_json()))
    assert data["name"] == "ratio_table1" and data["columns"][0] == "Market1501 mAP"
    assert data["cells"][15][0]["paper"] == 83.12 and data["cells"][15][0]["mark"] == NOT_RUN
    assert data["cells"][0][0]["paper"] == 46.0 and data["rows"][0] == "IDE [7] (quoted)"


def test_report_says_how_many_gallery_draws_a_number_is_the_mean_of(tmp_path):
    plan = plan_table(load_table("adasp"), str(tmp_path), datasets=["VehicleID", "VeRi"])
    run = plan.runs["adasp/VehicleID/norm_single_adasp/VehicleID"]
    metrics = {"Rank-1": 86.0, "mAP": 80.0}
    payload = {
        "epoch": run.max_epoch,
        "results": {"SmallVehicleID": metrics, "MediumVehicleID": metrics},
        "gallery_draws": {"SmallVehicleID": 10, "MediumVehicleID": 10},
    }
    os.makedirs(run.output_dir)
    with open(os.path.join(run.output_dir, "results.json"), "w") as f:
        json.dump(payload, f)
    _write_results(plan.runs["adasp/VeRi/norm_single_adasp/VeRi"], 60, {"mAP": 77.0})
    result = collect(plan)
    adasp = result.cells[result.rows.index("AdaSP")]
    assert [c.draws for c in adasp] == [1, 1, 1, 1, 10, 10]
    assert (adasp[4].ours, adasp[3].ours) == (86.0, 77.0)
    md = to_markdown(result)
    assert (
        "Gallery draws (ours):\n"
        "- VehicleID-small Rank-1: the mean of 10 draws\n"
        "- VehicleID-medium Rank-1: the mean of 10 draws\n"
    ) in md
    assert json.loads(json.dumps(result.to_json()))["cells"][2][4]["draws"] == 10
