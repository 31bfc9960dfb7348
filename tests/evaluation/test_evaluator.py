"""ReidEvaluator and inference_on_dataset on a tiny fake model and loader; settings from the
config; table and JSON helpers."""

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from reid.config import ConfigError, InvalidArgument, get_cfg, merge_from_list
from reid.evaluation.distance import build_distance, compute_distmat
from reid.evaluation.evaluator import (
    EvalSettings,
    ReidEvaluator,
    format_results_table,
    inference_on_dataset,
)
from reid.evaluation.query_expansion import alpha_query_expansion
from reid.evaluation.rank import GalleryIndex, evaluate_rank
from reid.evaluation.rerank import FeatureDistances, rerank_chunks
from reid.evaluation.roc import RocAccumulator

NUM_QUERY = 6


class RowModel(nn.Module):
    """Feature = first pixel row of channel 0, so a horizontal flip reverses it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.modes = []

    def forward(self, batch):
        self.modes.append(self.training)
        return batch["images"][:, 0, 0, :] * self.scale


class RecordingEvaluator(ReidEvaluator):
    def process(self, batch, features):
        self.seen = getattr(self, "seen", []) + [features.clone()]
        super().process(batch, features)


def make_loader(seed=0, num_gallery=20, batch_size=5):
    g = torch.Generator().manual_seed(seed)
    n = NUM_QUERY + num_gallery
    images = torch.rand(n, 3, 2, 6, generator=g) * 255
    pids = torch.cat(
        [torch.arange(NUM_QUERY) % 4, torch.randint(0, 5, (num_gallery,), generator=g)]
    )
    camids = torch.cat(
        [
            torch.zeros(NUM_QUERY, dtype=torch.int64),
            torch.randint(0, 3, (num_gallery,), generator=g),
        ]
    )
    batches = []
    for s in range(0, n, batch_size):
        batches.append(
            {
                "images": images[s : s + batch_size].clone(),
                "targets": pids[s : s + batch_size].clone(),
                "camids": camids[s : s + batch_size].clone(),
                "img_paths": [f"img{i}.jpg" for i in range(s, min(n, s + batch_size))],
            }
        )
    return batches, images, pids, camids


def expected_results(distmat, pids, camids, official=False, cuhk03=False):
    cmc, ap, inp = evaluate_rank(
        distmat,
        pids[:NUM_QUERY],
        pids[NUM_QUERY:],
        camids[:NUM_QUERY],
        camids[NUM_QUERY:],
        official_ap=official,
        use_metric_cuhk03=cuhk03,
    )
    r1, m = cmc[0] * 100, np.mean(ap) * 100
    return {
        "Rank-1": r1,
        "Rank-5": cmc[4] * 100,
        "Rank-10": cmc[9] * 100,
        "mAP": m,
        "mINP": np.mean(inp) * 100,
        "metric": (m + r1) / 2,
    }


def assert_results(got, want):
    assert list(got)[: len(want)] == list(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_flip_average_eval_mode_and_untouched_batches():
    loader, images, pids, camids = make_loader()
    before = [
        {k: (v.clone() if torch.is_tensor(v) else list(v)) for k, v in b.items()} for b in loader
    ]
    model = RowModel().train()
    evaluator = RecordingEvaluator(NUM_QUERY)
    inference_on_dataset(model, loader, evaluator, flip=True)
    row = images[:, 0, 0, :]
    torch.testing.assert_close(torch.cat(evaluator.seen), (row + row.flip(1)) / 2)
    assert model.modes and not any(model.modes)
    assert model.training
    for b, original in zip(loader, before):
        assert torch.equal(b["images"], original["images"]) and torch.equal(
            b["targets"], original["targets"]
        )
        assert b["img_paths"] == original["img_paths"]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_metrics_equal_evaluate_rank_on_the_features(metric):
    loader, images, pids, camids = make_loader(seed=1)
    evaluator = ReidEvaluator(NUM_QUERY, EvalSettings(metric=metric))
    results = inference_on_dataset(RowModel(), loader, evaluator)
    feats = images[:, 0, 0, :]
    distmat = compute_distmat(feats[:NUM_QUERY], feats[NUM_QUERY:], metric)
    assert_results(results, expected_results(distmat, pids, camids))
    assert set(results) == {"Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric"}


def test_official_ap_switch_and_chunk_size():
    loader, images, pids, camids = make_loader(seed=2)
    evaluator = ReidEvaluator(NUM_QUERY, EvalSettings(official_ap=True, chunk_size=2))
    results = inference_on_dataset(RowModel(), loader, evaluator)
    feats = images[:, 0, 0, :]
    assert_results(
        results,
        expected_results(
            compute_distmat(feats[:NUM_QUERY], feats[NUM_QUERY:]), pids, camids, official=True
        ),
    )


def test_query_expansion_rerank_and_roc():
    loader, images, pids, camids = make_loader(seed=3)
    feats = images[:, 0, 0, :]
    settings = EvalSettings(
        aqe=True, aqe_k=3, rerank=True, rerank_k1=5, rerank_k2=2, roc=True, roc_fprs=(0.1, 0.5)
    )
    results = inference_on_dataset(RowModel(), loader, ReidEvaluator(NUM_QUERY, settings))
    qf, gf = alpha_query_expansion(feats[:NUM_QUERY], feats[NUM_QUERY:], 1, 3, 3.0)
    distance = build_distance("cosine")
    source = FeatureDistances(distance.prepare(qf), distance.prepare(gf), distance)
    distmat = torch.cat([c for _, _, c in rerank_chunks(source, 5, 2, 0.3)])
    assert_results(results, expected_results(distmat, pids, camids))
    roc = RocAccumulator(
        GalleryIndex(pids[NUM_QUERY:], camids[NUM_QUERY:]), pids[:NUM_QUERY], (0.1, 0.5)
    )
    roc.add(distmat, pids[:NUM_QUERY], camids[:NUM_QUERY])
    for key, value in roc.compute().items():
        assert results[key] == pytest.approx(value * 100)
    assert "TPR@FPR=1e-01" in results


def test_single_gallery_shot_cmc():
    loader, images, pids, camids = make_loader(seed=4)
    feats = images[:, 0, 0, :]
    distmat = compute_distmat(feats[:NUM_QUERY], feats[NUM_QUERY:])
    settings = EvalSettings(single_gallery_shot=True)
    classic = inference_on_dataset(RowModel(), loader, ReidEvaluator(NUM_QUERY, settings))
    assert_results(classic, expected_results(distmat, pids, camids, cuhk03=True))
    plain = inference_on_dataset(RowModel(), loader, ReidEvaluator(NUM_QUERY))
    assert_results(plain, expected_results(distmat, pids, camids))


def test_config_maps_every_setting_and_the_dataset_decides_the_classic_cmc():
    cfg = get_cfg()
    t = cfg.TEST
    t.METRIC, t.CHUNK_SIZE, t.METRIC_THREADS, t.OFFICIAL_MARKET_AP = "euclidean", 7, 0, True
    t.AQE.ENABLED, t.AQE.QE_TIME, t.AQE.QE_K, t.AQE.ALPHA = True, 2, 3, 1.5
    t.RERANK.ENABLED, t.RERANK.K1, t.RERANK.K2, t.RERANK.LAMBDA = True, 5, 2, 0.5
    t.ROC.ENABLED, t.ROC.FPRS = True, [0.1, 0.5]
    t.CUHK03_CLASSIC.ENABLED, t.CUHK03_CLASSIC.REPEATS, t.CUHK03_CLASSIC.SEED = True, 3, 4
    evaluator = ReidEvaluator(cfg, NUM_QUERY, output_dir="out", dataset_name="CUHK03")
    assert evaluator.settings == EvalSettings(
        metric="euclidean",
        chunk_size=7,
        metric_threads=0,
        official_ap=True,
        aqe=True,
        aqe_times=2,
        aqe_k=3,
        aqe_alpha=1.5,
        rerank=True,
        rerank_k1=5,
        rerank_k2=2,
        rerank_lambda=0.5,
        roc=True,
        roc_fprs=(0.1, 0.5),
        single_gallery_shot=True,
        cuhk03_repeats=3,
        cuhk03_seed=4,
    )
    assert (evaluator.num_query, evaluator.output_dir, evaluator.dataset_name) == (
        NUM_QUERY,
        "out",
        "CUHK03",
    )
    # The classic CMC applies where the dataset class asks for it (CUHK03), not elsewhere.
    assert not EvalSettings.from_config(cfg, "Market1501").single_gallery_shot
    assert not EvalSettings.from_config(cfg).single_gallery_shot
    t.CUHK03_CLASSIC.ENABLED = False
    assert not EvalSettings.from_config(cfg, "CUHK03").single_gallery_shot
    assert EvalSettings.from_config(get_cfg()) == EvalSettings()


def test_bad_settings_name_the_argument_or_the_key():
    with pytest.raises(InvalidArgument, match="chunk_size must be >= 0, got -1"):
        EvalSettings(chunk_size=-1)
    with pytest.raises(InvalidArgument, match="rerank_k2 must be >= 1, got 0"):
        EvalSettings(rerank=True, rerank_k2=0)
    with pytest.raises(InvalidArgument, match="metric must be a registered distance"):
        EvalSettings(metric="manhattan")
    EvalSettings(rerank_k2=0)  # checked only when re-ranking is on
    for key, value, message in [
        ("RERANK.K1", 0, r"TEST.RERANK.K1 must be >= 1, got 0"),
        ("RERANK.LAMBDA", 2.0, r"TEST.RERANK.LAMBDA must lie in \[0, 1\], got 2.0"),
        ("ROC.FPRS", [0.0], r"TEST.ROC.FPRS must lie in \(0, 1\]"),
        ("AQE.QE_TIME", 0, r"TEST.AQE.QE_TIME must be >= 1, got 0"),
        ("CUHK03_CLASSIC.REPEATS", 0, r"TEST.CUHK03_CLASSIC.REPEATS must be >= 1"),
        ("METRIC_THREADS", -1, r"TEST.METRIC_THREADS must be >= 0, got -1"),
    ]:
        cfg = get_cfg()
        for block in ("RERANK", "ROC", "AQE", "CUHK03_CLASSIC"):
            cfg.TEST[block].ENABLED = True
        merge_from_list(cfg, [f"TEST.{key}", str(value)])
        with pytest.raises(ConfigError, match=message):
            EvalSettings.from_config(cfg, "CUHK03")
    # What depends on the data is checked when scoring, still naming the setting or the key.
    loader, _, _, _ = make_loader(seed=8)
    with pytest.raises(InvalidArgument, match=r"aqe_k must lie in \[1, 26\]"):
        inference_on_dataset(
            RowModel(), loader, ReidEvaluator(NUM_QUERY, EvalSettings(aqe=True, aqe_k=30))
        )
    cfg = get_cfg()
    cfg.TEST.AQE.ENABLED, cfg.TEST.AQE.QE_K = True, 30
    with pytest.raises(ConfigError, match=r"TEST.AQE.QE_K must lie in \[1, 26\]"):
        inference_on_dataset(RowModel(), loader, ReidEvaluator(cfg, NUM_QUERY))


def test_results_json_in_output_dir(tmp_path):
    loader, _, _, _ = make_loader(seed=5)
    results = inference_on_dataset(
        RowModel(), loader, ReidEvaluator(NUM_QUERY, output_dir=str(tmp_path), dataset_name="Toy")
    )
    with open(tmp_path / "inference" / "Toy.json") as f:
        assert json.load(f) == {"Toy": pytest.approx(results)}
    unnamed = tmp_path / "unnamed"
    inference_on_dataset(RowModel(), loader, ReidEvaluator(NUM_QUERY, output_dir=str(unnamed)))
    assert not unnamed.exists()


def test_bad_num_query():
    with pytest.raises(InvalidArgument, match="num_query must be >= 1"):
        ReidEvaluator(0)
    with pytest.raises(InvalidArgument, match="num_query must be >= 1"):
        ReidEvaluator(get_cfg(), 0)
    loader, _, _, _ = make_loader(seed=6, num_gallery=0)
    with pytest.raises(ValueError, match="at least one gallery image"):
        inference_on_dataset(RowModel(), loader, ReidEvaluator(NUM_QUERY))


def test_results_table():
    table = format_results_table(
        {
            "Market1501": {"Rank-1": 94.123, "mAP": 85.0},
            "Duke": {"Rank-1": 86.5, "mINP": float("nan")},
        }
    )
    assert table == "\n".join(
        [
            "| Dataset    | Rank-1 |   mAP | mINP |",
            "|:-----------|-------:|------:|-----:|",
            "| Market1501 |  94.12 | 85.00 |    - |",
            "| Duke       |  86.50 |     - |  nan |",
        ]
    )
    with pytest.raises(ValueError, match="at least one test set"):
        format_results_table({})


def _distributed_worker(rank, init_file, out_dir, rank0_batches):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        loader, _, _, _ = make_loader(seed=7)
        shard = loader[:rank0_batches] if rank == 0 else loader[rank0_batches:]  # contiguous shards
        results = inference_on_dataset(RowModel(), shard, ReidEvaluator(NUM_QUERY))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("rank0_batches", [2, 6])  # 6: rank 1 gets no image at all
def test_two_ranks_gather_features_and_rank0_scores(tmp_path, rank0_batches):
    import torch.multiprocessing as mp

    mp.spawn(
        _distributed_worker,
        args=(str(tmp_path / "init"), str(tmp_path), rank0_batches),
        nprocs=2,
        join=True,
    )
    loader, _, _, _ = make_loader(seed=7)
    single = inference_on_dataset(RowModel(), loader, ReidEvaluator(NUM_QUERY))
    with open(tmp_path / "rank0.json") as f:
        assert json.load(f) == pytest.approx(single)
    with open(tmp_path / "rank1.json") as f:
        assert json.load(f) == {}
