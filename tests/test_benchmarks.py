"""The benchmark scripts run: the GPU check's every part, tiny, on the CPU (its --smoke mode), and
train_speed.py on the tiny synthetic run."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # subprocess runs of whole benchmarks


def _run(args, tmp_path, timeout=900):
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_gpu_check_runs_every_part_in_its_smoke_mode(tmp_path):
    out = tmp_path / "check.json"
    stdout = _run(
        ["benchmarks/gpu_check.py", "--smoke", "--budget", "1200", "--json", str(out)], tmp_path
    )
    result = json.loads(out.read_text())
    rows = {(row["part"], row["name"]): row for row in result["rows"]}
    assert not [row for row in result["rows"] if "error" in row]
    parts = {part for part, _ in rows}
    assert parts == {"data", "sync", "loader", "trainer", "step", "eval", "nccl", "compile"}
    measured = [row for row in result["rows"] if "skipped" not in row]
    assert {row["part"] for row in measured} == parts - {"sync"}
    assert rows[("data", "Market-1501-sized JPEG set")]["images"] == 88
    for backend in ("per_image", "batched"):
        trainer = rows[("trainer", f"R50 fp32, {backend}")]
        assert trainer["ratio"] == pytest.approx(
            trainer["trainer_images_per_s"] / trainer["loop_images_per_s"]
        )
    assert "# " in stdout and "written to" in stdout
    script = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0


def test_train_speed_measures_every_part(tmp_path, synthetic_root):
    out = tmp_path / "speed.json"
    opts = [
        "DATASETS.ROOT",
        synthetic_root,
        "DATASETS.SYNTHETIC.NUM_TRAIN_IDS",
        "8",
        "DATASETS.SYNTHETIC.IMGS_PER_ID",
        "4",
        "DATASETS.SYNTHETIC.IMAGE_SIZE",
        "[32, 16]",
        "INPUT.SIZE_TRAIN",
        "[32, 16]",
        "INPUT.SIZE_TEST",
        "[32, 16]",
        "SOLVER.IMS_PER_BATCH",
        "8",
        "MODEL.DEVICE",
        "cpu",
    ]
    args = ["benchmarks/train_speed.py", "--iters", "1", "--warmup", "1", "--rounds", "1"]
    stdout = _run([*args, "--json", str(out), *opts], tmp_path)
    result = json.loads(out.read_text())
    for backend in ("per_image", "batched"):
        loader = result["loader"][backend]
        assert loader["images_per_s"] > 0 and loader["images_per_cpu_s_one_core"] > 0
        assert result["ratios"][backend]["trainer/loop"] == pytest.approx(
            result["trainer"][backend]["median"] / result["loop"][backend]["median"]
        )
    assert result["step"] > 0 and "(d) hand-written loop" in stdout
