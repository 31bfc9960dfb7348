"""tools/visualize.py and TEST.VISUALIZE end to end on the tiny synthetic set."""

import importlib.util
import json
import os

import pytest
from PIL import Image

from reid.config import ConfigError
from reid.engine import DefaultTrainer
from reid.visualization.ranklist import RankListLayout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "configs", "Synthetic", "quickstart.yml")


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weights_are_required(tmp_path):
    with pytest.raises(ValueError, match="needs MODEL.WEIGHTS"):
        _tool("visualize").main(["--config-file", QUICKSTART, "--output", str(tmp_path)])


def test_bad_order_is_refused(capsys):
    with pytest.raises(SystemExit):
        _tool("visualize").argument_parser().parse_args(
            ["--config-file", QUICKSTART, "--output", "x", "--order", "median"]
        )
    assert "invalid choice: 'median'" in capsys.readouterr().err


def test_trainer_refuses_bad_options_before_training(tiny_cfg):
    with pytest.raises(ConfigError, match="TEST.VISUALIZE.ORDER must be one of"):
        DefaultTrainer(tiny_cfg("TEST.VISUALIZE.ORDER", "median"))
    with pytest.raises(ConfigError, match="DATASETS.TESTS names none"):
        DefaultTrainer(tiny_cfg("TEST.VISUALIZE.ENABLED", "True", "DATASETS.TESTS", "()"))


@pytest.mark.slow
def test_training_draws_at_the_end_and_the_tool_redraws_any_checkpoint(
    tmp_path, tiny_opts, local_files, capsys
):
    train_net = _tool("train_net")
    run = str(tmp_path / "run")
    argv = [
        "--config-file",
        QUICKSTART,
        *tiny_opts,
        "OUTPUT_DIR",
        run,
        "TEST.VISUALIZE.ENABLED",
        "True",
        "TEST.VISUALIZE.NUM_QUERIES",
        "3",
    ]
    train_net.main(train_net.default_argument_parser().parse_args(argv))
    final = json.load(open(os.path.join(run, "results.json")))["results"]["Synthetic"]
    drawn = os.path.join(run, "visualize")
    curves = json.load(open(os.path.join(drawn, "Synthetic", "curves.json")))
    for key, value in final.items():  # the final evaluation's numbers, from the same model
        assert curves["results"][key] == pytest.approx(value, abs=1e-6), key
    assert len(json.load(open(os.path.join(drawn, "Synthetic", "rank_lists.json")))["queries"]) == 3
    assert len(local_files(os.path.join(drawn, "index.html"))) == 3 + 3 + 2  # figures, lists, json

    out = str(tmp_path / "vis")
    weights = os.path.join(run, "model_final.pth")
    _tool("visualize").main(
        [
            "--config-file",
            QUICKSTART,
            "--output",
            out,
            "--num-queries",
            "2",
            "--order",
            "best",
            *tiny_opts,
            "MODEL.WEIGHTS",
            weights,
            "TEST.VISUALIZE.TOP_K",
            "5",
            "TEST.VISUALIZE.IMAGE_SIZE",
            "[64, 32]",
        ]
    )
    printed = capsys.readouterr().out
    assert f"| Synthetic | {final['Rank-1']:6.2f} |" in printed
    assert f"Open {os.path.join(out, 'index.html')}" in printed
    listing = json.load(open(os.path.join(out, "Synthetic", "rank_lists.json")))
    assert listing["order"] == "best" and listing["top_k"] == 5
    aps = [q["ap"] for q in listing["queries"]]
    assert len(aps) == 2 and aps == sorted(aps, reverse=True)
    files = local_files(os.path.join(out, "index.html"))
    lists = sorted(f for f in files if f.endswith(".png") and "ranklists" in f)
    assert len(lists) == 2
    with Image.open(lists[0]) as picture:
        assert picture.size == RankListLayout(image_size=(64, 32), num_items=5).size
    page = open(os.path.join(out, "index.html")).read()
    assert weights in page
    for name in ("config.yaml", "log.txt"):
        assert os.path.isfile(os.path.join(out, name))
