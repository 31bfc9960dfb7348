"""tools/reproduce.py end to end: listing, dry runs, missing data, quick runs, skipping, resuming
and failures."""

import importlib.util
import json
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPERS = os.path.join(ROOT, "configs", "papers")


def _tool():
    spec = importlib.util.spec_from_file_location(
        "reproduce", os.path.join(ROOT, "tools", "reproduce.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


def test_list_names_every_table(tool, capsys):
    assert tool.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("adasp", "ratio_table1", "ratio_table3", "unified_table4", "survey"):
        assert f"\n{name}: " in "\n" + out


def test_dry_run_lists_runs_reports_missing_data_and_trains_nothing(tool, tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    out_dir = tmp_path / "out"
    rc = tool.main(
        [
            "--table",
            "ratio_table1",
            "--dry-run",
            "--output-dir",
            str(out_dir),
            "DATASETS.ROOT",
            str(empty),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "Table ratio_table1: 8 run(s)" in out
    assert (
        "dataset Market1501 missing, its runs are skipped: Market1501: dataset folder not found"
        in out
    )
    assert out.count("[skipped (dataset missing)]") == 8
    assert out.count("python tools/train_net.py --config-file ") == 8
    assert "nsl_ratio_ohem.yml DATASETS.NAMES '[\"DukeMTMC\"]'" in out
    assert f"DATASETS.ROOT {empty}" in out
    assert "| Baseline (NSL) | 81.65 | no data |" in out
    assert sorted(os.listdir(out_dir)) == ["ratio_table1.json", "ratio_table1.md"]
    report = json.loads((out_dir / "ratio_table1.json").read_text())
    assert set(report["missing_datasets"]) == {"Market1501", "DukeMTMC"}


def test_unknown_dataset_key_and_missing_table_are_usage_errors(tool, capsys):
    with pytest.raises(SystemExit) as info:
        tool.main(["--table", "ratio_table1", "--datasets", "Market"])
    assert info.value.code == 2
    assert "--datasets: ['Market'] belong to none of the tables" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--dry-run"])


def test_datasets_filter_over_all_tables(tool, tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    rc = tool.main(
        [
            "--table",
            "all",
            "--datasets",
            "VeRi",
            "--dry-run",
            "--output-dir",
            str(tmp_path / "o"),
            "DATASETS.ROOT",
            str(empty),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "Table adasp: 6 run(s)" in out
    assert "Table ratio_table1: none of --datasets ['VeRi'] is among its datasets" in out
    assert "adasp/VeRi/norm_CE_sp-lh/VeRi" in out and "adasp/MSMT17" not in out


@pytest.fixture
def papers_dir(tmp_path):
    """A papers folder with one table: a one-stage config, a three-stage one and a broken one."""
    folder = tmp_path / "papers"
    (folder / "tables").mkdir(parents=True)
    (folder / "datasets").mkdir()
    for name in ("Market1501", "DukeMTMC"):
        (folder / "datasets" / f"{name}.yml").write_text(
            f'DATASETS:\n  NAMES: ["{name}"]\n  TESTS: ["{name}"]\n'
        )
    (folder / "nsl.yml").write_text(f"_BASE_: {os.path.join(PAPERS, 'ratio', 'nsl_ratio.yml')}\n")
    (folder / "mpn.yml").write_text(f"_BASE_: {os.path.join(PAPERS, 'unified', 'mpn16_cls.yml')}\n")
    (folder / "broken.yml").write_text(
        f"_BASE_: {os.path.join(PAPERS, 'unified', 'pn16_cls.yml')}\n"
        "SOLVER:\n  MAX_EPOCH: 2\n  STAGES:\n    - {EPOCHS: 1}\n"
        "    - {EPOCHS: 1, TRAINABLE: ['no_such_module\\.']}\n"
    )
    (folder / "tables" / "mini.yaml").write_text(
        textwrap.dedent(
            """
            title: Mini table
            paper: A paper
            source: a test
            decimals: 1
            datasets:
              Market1501: {layer: datasets/Market1501.yml}
              DukeMTMC: {layer: datasets/DukeMTMC.yml}
            columns:
              - {dataset: Market1501, metric: mAP}
              - {dataset: DukeMTMC, metric: Rank-1}
            rows:
              - {name: NSL + ratio, config: nsl.yml, paper: [80.0, 90.0]}
              - {name: MPN three stages, config: mpn.yml, paper: [70.0, null]}
              - {name: Broken, config: broken.yml, paper: [null, null]}
            """
        )
    )
    return str(folder)


def _cells(report_path):
    report = json.loads(open(report_path).read())
    return {name: row for name, row in zip(report["rows"], report["cells"])}


@pytest.mark.slow
def test_quick_runs_the_table_then_skips_resumes_and_reports_failures(
    tool, papers_dir, tmp_path, synthetic_root, capsys
):
    out_dir = tmp_path / "quick"
    argv = [
        "--table",
        "mini",
        "--quick",
        "--keep-checkpoints",
        "--papers-dir",
        papers_dir,
        "--output-dir",
        str(out_dir),
        "DATASETS.ROOT",
        synthetic_root,
        "MODEL.DEVICE",
        "cpu",
    ]
    assert tool.main(argv) == 1  # the broken row failed; the others ran
    out = capsys.readouterr().out
    assert "Table mini: 3 run(s) (quick)" in out
    cells = _cells(out_dir / "mini.json")
    nsl, mpn, broken = cells["NSL + ratio"], cells["MPN three stages"], cells["Broken"]
    # One quick run per config serves both dataset columns.
    assert nsl[0]["run"] == nsl[1]["run"] == "nsl/Synthetic"
    results = json.loads((out_dir / "nsl" / "Synthetic" / "results.json").read_text())
    assert results["epoch"] == 1
    assert nsl[0]["ours"] == pytest.approx(results["results"]["Synthetic"]["mAP"])
    assert nsl[1]["ours"] == pytest.approx(results["results"]["Synthetic"]["Rank-1"])
    assert nsl[0]["delta"] == pytest.approx(nsl[0]["ours"] - 80.0) and nsl[0]["final"]
    assert mpn[0]["final"] and mpn[1]["delta"] is None
    assert json.loads((out_dir / "mpn" / "Synthetic" / "results.json").read_text())["epoch"] == 3
    assert broken[0]["mark"] == "failed"
    md = (out_dir / "mini.md").read_text()
    assert "**Quick run**" in md
    assert (
        "- broken/Synthetic: ValueError: SOLVER.STAGES[1].TRAINABLE: "
        "'no_such_module\\\\.' matches no parameter" in md
    )

    # Again: finished runs are skipped (their results untouched), the broken one is tried again.
    stamp = os.path.getmtime(out_dir / "mpn" / "Synthetic" / "results.json")
    assert tool.main(argv) == 1
    out = capsys.readouterr().out
    assert "[finished] nsl/Synthetic" in out and "[finished] mpn/Synthetic" in out
    assert os.path.getmtime(out_dir / "mpn" / "Synthetic" / "results.json") == stamp

    # An interrupted run (intermediate results, a checkpoint) resumes; here its training was
    # complete, so it only evaluates the final model again.
    path = out_dir / "mpn" / "Synthetic" / "results.json"
    final_map = json.loads(path.read_text())["results"]["Synthetic"]["mAP"]
    stale = json.loads(path.read_text())
    stale["epoch"] = 1
    path.write_text(json.dumps(stale))
    assert tool.main(argv) == 1
    out = capsys.readouterr().out
    assert "[partial] mpn/Synthetic" in out and "--resume" in out
    again = json.loads(path.read_text())
    assert again["epoch"] == 3
    assert again["results"]["Synthetic"]["mAP"] == pytest.approx(final_map, abs=1e-6)

    # Without --keep-checkpoints the weights of finished quick runs go; results and logs stay, and
    # the runs still count as finished.
    assert "model_final.pth" in os.listdir(out_dir / "nsl" / "Synthetic")
    assert tool.main([a for a in argv if a != "--keep-checkpoints"]) == 1
    out = capsys.readouterr().out
    assert "[finished] nsl/Synthetic" in out and "[finished] mpn/Synthetic" in out
    for run in ("nsl", "mpn"):
        left = sorted(os.listdir(out_dir / run / "Synthetic"))
        assert not [n for n in left if n.endswith(".pth") or n == "last_checkpoint"], left
        assert {"results.json", "log.txt", "metrics.json", "config.yaml"} <= set(left)
    assert "model_final.pth" not in os.listdir(out_dir / "broken" / "Synthetic")
    assert _cells(out_dir / "mini.json")["NSL + ratio"][0]["final"]
