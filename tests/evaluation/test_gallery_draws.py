"""The mean over VehicleID's random gallery draws: draws as re-splits of the extracted images,
the evaluator's mean, DefaultTrainer.test's results.json, and the config checks."""

import json
import os
import random
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from reid.config import ConfigError, get_cfg, load_config
from reid.data.datasets.bases import DatasetCountWarning, Record
from reid.data.datasets.vehicleid import VehicleID
from reid.engine import DefaultTrainer
from reid.evaluation import EvalSettings, ReidEvaluator, score_features
from reid.evaluation.gallery_draws import check_gallery_draws, draws_gallery, gallery_draws

# 7 test vehicles with 1 to 4 images each (lines unsorted, as in the official lists).
SIZES = {21: 4, 22: 2, 23: 3, 24: 1, 25: 4, 26: 2, 27: 3}


def _test_lines() -> list[str]:
    lines = [f"{vid * 100 + k:07d} {vid:04d}" for vid, n in SIZES.items() for k in range(n)]
    random.Random(0).shuffle(lines)
    return lines


def _records() -> list[Record]:
    return [
        Record(f"/img/{line.split()[0]}.jpg", int(line.split()[1]), 0, "SmallVehicleID")
        for line in _test_lines()
    ]


def _reference_draw(seed: int) -> tuple[list[str], list[str]]:
    """The published protocol written out: vehicles in id order, one image per vehicle (index
    drawn by random.Random(seed) among its sorted paths) to the gallery."""
    rng = random.Random(seed)
    query, gallery = [], []
    for vid in sorted(SIZES):
        paths = sorted(r.path for r in _records() if r.pid == vid)
        k = rng.randrange(len(paths))
        gallery.append(paths[k])
        query += [p for i, p in enumerate(paths) if i != k]
    return sorted(query), sorted(gallery)


def test_draws_are_the_datasets_seeded_splits_as_indices_into_the_images() -> None:
    records = _records()
    draws = gallery_draws("SmallVehicleID", records, 10)
    assert [d.seed for d in draws] == list(range(10))
    for d in draws:
        query, gallery = _reference_draw(d.seed)
        paths = [records[i].path for i in d.order.tolist()]
        assert paths == query + gallery and d.num_query == len(query) == 12
        assert d.camids.tolist() == [0] * len(query) + [1] * len(gallery)
        assert sorted(d.order.tolist()) == list(range(len(records)))
    galleries = {tuple(sorted(d.order[d.num_query :].tolist())) for d in draws}
    assert len(galleries) > 5  # the draws differ


def test_draw_errors() -> None:
    records = _records()
    with pytest.raises(ValueError, match="Market1501 does not draw its gallery at random"):
        gallery_draws("Market1501", records, 2)
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        gallery_draws("SmallVehicleID", records, 0)
    with pytest.raises(ValueError, match="the test images hold a path twice"):
        gallery_draws("SmallVehicleID", records + records[:1], 2)
    assert draws_gallery("LargeVehicleID") and not draws_gallery("VeRi")


def _features(n: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_evaluator_reports_the_mean_of_the_draws() -> None:
    records = _records()
    features = _features(len(records))
    pids = torch.tensor([r.pid for r in records])
    draws = gallery_draws("SmallVehicleID", records, 10)
    evaluator = ReidEvaluator(12, draws=draws)
    evaluator.process({"targets": pids, "camids": torch.zeros(len(records))}, features)
    results = evaluator.evaluate()
    # Independently: score each draw's query and gallery features, then average.
    index = {r.path: i for i, r in enumerate(records)}
    per_draw = []
    for seed in range(10):
        query, gallery = _reference_draw(seed)
        rows = [index[p] for p in query + gallery]
        camids = torch.tensor([0] * len(query) + [1] * len(gallery))
        per_draw.append(score_features(features[rows], pids[rows], camids, len(query)))
    for key in ("Rank-1", "Rank-5", "mAP", "mINP", "metric"):
        expected = sum(r[key] for r in per_draw) / 10
        assert results[key] == pytest.approx(expected, rel=1e-12), key
    assert len({round(r["mAP"], 6) for r in per_draw}) > 1  # a mean of different numbers
    assert evaluator.num_draws == 10 and len(evaluator.draw_results) == 10
    evaluator.reset()
    evaluator.process({"targets": pids[:13], "camids": torch.zeros(13)}, features[:13])
    with pytest.raises(
        ValueError, match="13 images were processed, but the gallery draws re-split"
    ):
        evaluator.evaluate()


def test_settings_and_checks_of_the_key() -> None:
    cfg = load_config(None, ["TEST.GALLERY_DRAWS", 10])
    assert EvalSettings.from_config(cfg, "SmallVehicleID").gallery_draws == 10
    assert EvalSettings.from_config(cfg, "Market1501").gallery_draws == 1  # a fixed gallery
    cfg.DATASETS.TESTS = ["Market1501", "MediumVehicleID"]
    check_gallery_draws(cfg)
    cfg.DATASETS.TESTS = ["Market1501", "VeRi"]
    with pytest.raises(
        ConfigError,
        match=r"^TEST.GALLERY_DRAWS 10 averages random gallery draws, but no test set of "
        r"DATASETS.TESTS \(Market1501, VeRi\) draws .*LargeVehicleID, MediumVehicleID, "
        r"SmallVehicleID, VehicleID\); set it to 1",
    ):
        check_gallery_draws(cfg)
    cfg.TEST.GALLERY_DRAWS = 0
    with pytest.raises(ConfigError, match="^TEST.GALLERY_DRAWS must be >= 1, got 0"):
        check_gallery_draws(cfg)
    cfg = load_config(None, ["TEST.GALLERY_DRAWS", 3])
    with pytest.raises(ConfigError, match="^TEST.GALLERY_DRAWS 3: .* needs its test images"):
        ReidEvaluator(cfg, 4, dataset_name="SmallVehicleID")


class ColourModel(nn.Module):
    """The test feature of an image: its mean colour per channel and quadrant."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch: dict) -> torch.Tensor:
        images = batch["images"]
        h, w = images.shape[2] // 2, images.shape[3] // 2
        parts = [
            images[:, :, i * h : (i + 1) * h, j * w : (j + 1) * w] for i in (0, 1) for j in (0, 1)
        ]
        return torch.cat([p.mean(dim=(2, 3)) for p in parts], dim=1) + self.dummy


def _vehicleid_tree(root: Path) -> None:
    base = root / "VehicleID_V1.0"
    (base / "train_test_split").mkdir(parents=True)
    (base / "image").mkdir()
    (base / "train_test_split" / "train_list.txt").write_text("0000001 0001\n0000002 0001\n")
    lines = _test_lines()
    (base / "train_test_split" / "test_list_800.txt").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    for line in ["0000001 0001", "0000002 0001", *lines]:
        image, vid = line.split()
        # A vehicle's images share a colour pattern, blurred by a per-image offset as large as
        # the differences between vehicles: the ranks are informative but imperfect.
        pattern = 128 + np.random.default_rng(int(vid)).integers(-30, 30, (2, 2, 3))
        pixels = np.kron(pattern + rng.integers(-30, 30, (2, 2, 3)), np.ones((8, 4, 1)))
        cv2.imwrite(str(base / "image" / f"{image}.jpg"), pixels.clip(0, 255).astype(np.uint8))


def _cfg(root: Path, out: Path, draws: int, repeat: int = 0):
    cfg = get_cfg()
    opts = {
        "DATASETS.ROOT": str(root),
        "DATASETS.TESTS": ["SmallVehicleID"],
        "DATASETS.VEHICLEID.REPEAT": repeat,
        "TEST.GALLERY_DRAWS": draws,
        "INPUT.SIZE_TEST": [16, 8],
        "DATALOADER.NUM_WORKERS": 0,
        "TEST.IMS_PER_BATCH": 8,
        "OUTPUT_DIR": str(out),
    }
    for key, value in opts.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def test_trainer_test_averages_ten_draws_and_says_so(tmp_path: Path) -> None:
    _vehicleid_tree(tmp_path / "data")
    model = ColourModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        averaged = DefaultTrainer.test(_cfg(tmp_path / "data", tmp_path / "ten", 10), model)
        # The same evaluation, one loaded split (DATASETS.VEHICLEID.REPEAT = seed) at a time.
        singles = [
            DefaultTrainer.test(_cfg(tmp_path / "data", tmp_path / f"one{s}", 1, s), model)
            for s in range(10)
        ]
    for key in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP"):
        expected = sum(r["SmallVehicleID"][key] for r in singles) / 10
        assert averaged["SmallVehicleID"][key] == pytest.approx(expected, rel=1e-9), key
    assert len({round(r["SmallVehicleID"]["mAP"], 6) for r in singles}) > 1
    with open(tmp_path / "ten" / "results.json") as f:
        written = json.load(f)
    assert written["gallery_draws"] == {"SmallVehicleID": 10}
    assert written["results"]["SmallVehicleID"]["mAP"] == pytest.approx(
        averaged["SmallVehicleID"]["mAP"]
    )
    with open(tmp_path / "one3" / "results.json") as f:
        assert "gallery_draws" not in json.load(f)
    with open(tmp_path / "ten" / "inference" / "SmallVehicleID.json") as f:
        per_draw = json.load(f)["gallery_draws"]
    assert [d["seed"] for d in per_draw] == list(range(10))
    assert per_draw[4]["mAP"] == pytest.approx(singles[4]["SmallVehicleID"]["mAP"], rel=1e-9)
    assert os.path.isfile(tmp_path / "one0" / "results.json")


def test_draw_gallery_is_the_vehicleid_split_of_load() -> None:
    query, gallery = VehicleID.draw_gallery(_records(), 4)
    expected_query, expected_gallery = _reference_draw(4)
    assert [r.path for r in query] == expected_query
    assert [r.path for r in gallery] == expected_gallery
    assert {r.camid for r in query} == {0} and {r.camid for r in gallery} == {1}
