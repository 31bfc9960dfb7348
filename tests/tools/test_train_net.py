"""Quick-start path end to end: tools/train_net.py trains, evaluates, resumes and evaluates only."""

import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap

import pytest

from reid.utils.checkpoint import (
    ExistingRunError,
    completed_epochs,
    load_checkpoint_file,
)

pytestmark = pytest.mark.slow  # end-to-end trainings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_net():
    spec = importlib.util.spec_from_file_location(
        "train_net", os.path.join(ROOT, "tools", "train_net.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, argv):
    module.main(module.default_argument_parser().parse_args(argv))


def test_quickstart_config_shrunk_by_opts_trains_and_evaluates(tmp_path, tiny_opts):
    module = _train_net()
    out = str(tmp_path / "quick")
    argv = [
        "--config-file",
        os.path.join(ROOT, "configs", "Synthetic", "quickstart.yml"),
        *tiny_opts,
        "OUTPUT_DIR",
        out,
    ]
    _run(module, argv)
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.json",
        "model_final.pth",
        "results.json",
        "last_checkpoint",
    ):
        assert os.path.isfile(os.path.join(out, name)), name
    results = json.load(open(os.path.join(out, "results.json")))
    metrics = results["results"]["Synthetic"]
    assert results["epoch"] == 2
    assert 0.0 <= metrics["mAP"] <= 100.0 and 0.0 <= metrics["mINP"] <= metrics["mAP"] + 1e-9
    assert metrics["Rank-1"] <= metrics["Rank-5"] <= metrics["Rank-10"]

    # --resume on a finished run trains nothing more; --eval-only reproduces the final metrics
    # in its own folder and leaves the run's files as they were.
    _run(module, ["--resume", *argv])
    before = _snapshot(out)
    _run(module, ["--eval-only", *argv, "MODEL.WEIGHTS", os.path.join(out, "model_final.pth")])
    assert _snapshot(out) == before
    eval_dir = os.path.join(out, "eval", "model_final")
    assert sorted(os.listdir(eval_dir)) == [
        "config.yaml",
        "inference",
        "log.txt",
        "results.json",
        "run.lock",  # held by this process until it ends
    ]
    again = json.load(open(os.path.join(eval_dir, "results.json")))
    assert again["epoch"] is None
    for key, value in metrics.items():
        assert again["results"]["Synthetic"][key] == pytest.approx(value, abs=1e-6), key

    # Starting from scratch over the finished run is refused; it names the ways on.
    with pytest.raises(ExistingRunError, match="continue that run with --resume, start over with"):
        _run(module, argv)
    assert _snapshot(out) == before


def _snapshot(folder):
    """Every file under ``folder`` but eval/: its bytes and modification time."""
    files = {}
    for base, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if os.path.join(base, d) != os.path.join(folder, "eval")]
        for name in names:
            path = os.path.join(base, name)
            files[os.path.relpath(path, folder)] = (
                open(path, "rb").read(),
                os.stat(path).st_mtime_ns,
            )
    return files


def test_eval_only_without_weights_is_an_error(tmp_path, tiny_opts):
    module = _train_net()
    with pytest.raises(ValueError, match="MODEL.WEIGHTS"):
        _run(module, ["--eval-only", *tiny_opts, "OUTPUT_DIR", str(tmp_path)])


def _train_net_cmd(*argv):
    return [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), *argv]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_an_error_is_one_line_and_debug_shows_the_traceback(tmp_path, tiny_opts):
    argv = [*tiny_opts, "OUTPUT_DIR", str(tmp_path / "run"), "DATALOADER.NUM_INSTANCE", "1"]
    proc = subprocess.run(_train_net_cmd(*argv), capture_output=True, text=True, env=_env())
    assert proc.returncode == 2  # a config error
    assert proc.stderr == (
        "error: DATALOADER.NUM_INSTANCE is 1, so no batch holds two images of one identity, and "
        "TripletLoss (in MODEL.LOSSES.NAME) would be exactly 0 on every batch: set "
        "DATALOADER.NUM_INSTANCE to 2 or more, or remove the loss\n"
    )
    proc = subprocess.run(
        _train_net_cmd("--debug", *argv), capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Traceback (most recent call last):")
    assert "reid.config.schema.ConfigError: DATALOADER.NUM_INSTANCE is 1" in proc.stderr


PARTIAL_SAVE = textwrap.dedent(
    """
    import os, runpy, sys, time
    import torch
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # model_final: stop in the middle of writing it, until killed
            f.write(b"\\0" * 1_000_000)
            f.flush()
            print("SAVING", flush=True)
            time.sleep(300)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


def test_one_run_per_output_dir_and_a_run_killed_while_saving_resumes(tmp_path, tiny_opts):
    out = tmp_path / "run"
    argv = [*tiny_opts, "OUTPUT_DIR", str(out), "TEST.EVAL_PERIOD", "2"]
    script = tmp_path / "partial_save.py"
    script.write_text(PARTIAL_SAVE)
    first = subprocess.Popen(
        [sys.executable, str(script), *_train_net_cmd(*argv)[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        lines = []
        for line in first.stdout:
            lines.append(line)
            if line.strip() == "SAVING":
                break
        assert lines and lines[-1].strip() == "SAVING", "".join(lines[-30:])

        # A second run on the folder is refused while the first one lives.
        second = subprocess.run(
            _train_net_cmd("--resume", *argv), capture_output=True, text=True, env=_env()
        )
        assert second.returncode == 1
        assert second.stderr.startswith(
            f"error: OUTPUT_DIR {out} is in use by another run (pid {first.pid} on host "
            f"{socket.gethostname()}, started "
        ), second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        first.kill()  # killed in the middle of writing model_final.pth
        first.wait()
    partial = [n for n in os.listdir(out) if n.startswith(".model_final.pth.")]
    assert len(partial) == 1 and not (out / "model_final.pth").exists()
    assert (out / "last_checkpoint").read_text() == "model_0001.pth"

    third = subprocess.run(
        _train_net_cmd("--resume", *argv), capture_output=True, text=True, env=_env()
    )
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert f"Took over the lock {out}/run.lock left by pid {first.pid} on host" in log
    assert f"Removed {out}/{partial[0]} (1.0 MB), a partial file left by an interrupted" in log
    assert f"Loaded checkpoint {out}/model_0001.pth" in log
    assert completed_epochs(load_checkpoint_file(str(out / "model_final.pth"))) == 2
    assert json.load(open(out / "results.json"))["epoch"] == 2
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert not (out / "run.lock").exists()  # released when the run ended
    mode = 0o666 & ~_umask()
    for name in ("config.yaml", "model_final.pth", "results.json", "last_checkpoint"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == mode, name


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
