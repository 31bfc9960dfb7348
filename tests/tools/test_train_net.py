"""Quick-start path end to end: tools/train_net.py trains, evaluates, resumes and evaluates only."""

import importlib.util
import json
import os

import pytest

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

    # --resume on a finished run trains nothing more; --eval-only reproduces the final metrics.
    _run(module, ["--resume", *argv])
    _run(module, ["--eval-only", *argv, "MODEL.WEIGHTS", os.path.join(out, "model_final.pth")])
    again = json.load(open(os.path.join(out, "results.json")))
    assert again["epoch"] is None
    for key, value in metrics.items():
        assert again["results"]["Synthetic"][key] == pytest.approx(value, abs=1e-6), key


def test_eval_only_without_weights_is_an_error(tmp_path, tiny_opts):
    module = _train_net()
    with pytest.raises(ValueError, match="MODEL.WEIGHTS"):
        _run(module, ["--eval-only", *tiny_opts, "OUTPUT_DIR", str(tmp_path)])
