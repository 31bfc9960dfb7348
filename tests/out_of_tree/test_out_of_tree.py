"""Components from outside the package: a loss and a dataset, each one file with its config block,
imported with ``--import`` and trained from a config that names their keys."""

import importlib
import json
import os

import pytest
import torch
from PIL import Image

from reid.config.reference import render_reference
from reid.engine import DefaultTrainer, default_argument_parser, setup
from reid.utils.checkpoint import load_checkpoint_file

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def extensions(monkeypatch):
    monkeypatch.syspath_prepend(HERE)
    return [importlib.import_module(m) for m in ("example_ring_loss", "example_viper")]


def _viper_tree(root, people=8):
    for cam, angle in (("cam_a", 45), ("cam_b", 90)):
        os.makedirs(os.path.join(root, "VIPeR", cam))
        for pid in range(people):
            colour = (30 * pid % 255, 80 if cam == "cam_a" else 160, 255 - 20 * pid)
            image = Image.new("RGB", (16, 32), colour)
            image.save(os.path.join(root, "VIPeR", cam, f"{pid:03d}_{angle}.bmp"))


def test_an_out_of_tree_loss_and_dataset_train_from_their_own_keys(extensions, tmp_path, tiny_opts):
    _viper_tree(str(tmp_path / "data"))
    args = default_argument_parser().parse_args(
        [
            "--import",
            "example_ring_loss",
            "--import",
            "example_viper",
            *tiny_opts,
            "DATASETS.ROOT",
            str(tmp_path / "data"),
            "DATASETS.NAMES",
            "('VIPeR',)",
            "DATASETS.TESTS",
            "('VIPeR',)",
            "DATASETS.VIPER.SPLIT_SEED",
            "3",
            "MODEL.LOSSES.NAME",
            "('CrossEntropyLoss', 'RingLoss')",
            "MODEL.LOSSES.RING.RADIUS",
            "5.0",
            "DATALOADER.NUM_INSTANCE",
            "2",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "SOLVER.MAX_EPOCH",
            "1",
            "TEST.EVAL_PERIOD",
            "1",
            "OUTPUT_DIR",
            str(tmp_path / "run"),
        ]
    )
    cfg = setup(args)
    assert cfg.DATASETS.VIPER.SPLIT_SEED == 3 and cfg.MODEL.LOSSES.RING.SCALE == 0.01
    trainer = DefaultTrainer(cfg)
    assert trainer.model.loss_set.weights == {"CrossEntropyLoss": 1.0, "RingLoss": 0.01}
    trainer.train()

    lines = [json.loads(line) for line in open(tmp_path / "run" / "metrics.json")]
    assert all("loss_ring" in line for line in lines)
    state = load_checkpoint_file(str(tmp_path / "run" / "model_final.pth"))["model"]
    radius = state["loss_set.losses.RingLoss.radius"]
    assert radius.shape == () and not torch.equal(radius, torch.tensor(5.0)), "R is learned"
    results = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    assert set(results) == {"VIPeR"}


def test_the_split_seed_picks_the_training_half(extensions, tmp_path):
    viper = extensions[1].VIPeR
    _viper_tree(str(tmp_path))
    a, b = viper(str(tmp_path), split_seed=0), viper(str(tmp_path), split_seed=1)
    ids = [sorted({r.pid for r in d.train}) for d in (a, b)]
    assert len(ids[0]) == 4 and ids[0] != ids[1]
    assert {r.pid for r in a.query} == {r.pid for r in a.gallery} == set(range(8)) - set(ids[0])
    with pytest.raises(ValueError, match="split_seed must be >= 0"):
        viper(str(tmp_path), split_seed=-1)


def test_the_key_reference_documents_out_of_tree_blocks(extensions):
    text = render_reference(packages=("reid", "example_ring_loss", "example_viper"))
    ring = "| `MODEL.LOSSES.RING.RADIUS` | `1.0` | Initial value of the learned radius R. |"
    assert f"{ring} `example_ring_loss` |" in text
    assert "`DATASETS.VIPER.SPLIT_SEED`" in text
    assert "RING" not in render_reference(), "reid's own reference lists reid's keys only"
