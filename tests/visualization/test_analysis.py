"""What the rank lists and figures show equals what the metric computes, against loop references."""

import math

import numpy as np
import pytest
import torch

from reid.config import InvalidArgument
from reid.evaluation import (
    EvalSettings,
    GalleryIndex,
    RocAccumulator,
    compute_distmat,
    evaluate_rank,
    score_features,
)
from reid.evaluation.rank import RankAccumulator
from reid.visualization.analysis import (
    DistanceHistogram,
    analyze_ranking,
    common_bins,
    first_kept,
    roc_curve_fprs,
)


def loop_rank_lists(distmat, q_pids, g_pids, q_camids, g_camids, k):
    """Per query: stable sort by distance, drop same pid + camid, the first k (column, match)."""
    lists, dropped = [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        same = (g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])
        kept = order[~same]
        lists.append([(int(c), bool(g_pids[c] == q_pids[q])) for c in kept[:k]])
        dropped.append(int(same.sum()))
    return lists, dropped


def random_ids(rng, num_q, num_g, num_ids=5, num_cams=3):
    return (
        rng.integers(0, num_ids, num_q),
        rng.integers(0, num_ids, num_g),
        rng.integers(0, num_cams, num_q),
        rng.integers(0, num_cams, num_g),
    )


def to_tensors(*arrays):
    return [torch.as_tensor(a) for a in arrays]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 4, 30])
def test_first_kept_is_the_metrics_order_with_ties(seed, k):
    rng = np.random.default_rng(seed)
    distmat = rng.integers(0, 4, size=(9, 20)).astype(np.float32)  # many ties
    q_pids, g_pids, q_camids, g_camids = random_ids(rng, 9, 20)
    gallery = GalleryIndex(*to_tensors(g_pids, g_camids))
    rows, cols, relevant = gallery.same_id_pairs(*to_tensors(q_pids, q_camids))
    columns, distances = first_kept(torch.from_numpy(distmat), rows[~relevant], cols[~relevant], k)
    expected, _ = loop_rank_lists(distmat, q_pids, g_pids, q_camids, g_camids, k)
    assert columns.shape == distances.shape == (9, k)
    for q, items in enumerate(expected):
        got = [c for c in columns[q].tolist() if c >= 0]
        assert got == [c for c, _ in items]
        assert (columns[q, len(items) :] == -1).all()  # fewer kept items than k: padded
        assert torch.isnan(distances[q, len(items) :]).all()
        np.testing.assert_array_equal(distances[q, : len(items)].numpy(), distmat[q, got])


def test_first_kept_keeps_infinite_kept_items_before_nothing_dropped():
    # Kept items at +inf stay listed (by column); a dropped item at +inf never is.
    dist = torch.tensor([[math.inf, 0.5, math.inf, math.inf]])
    columns, distances = first_kept(dist, torch.tensor([0]), torch.tensor([2]), k=4)
    assert columns.tolist() == [[1, 0, 3, -1]]
    assert distances[0, :3].tolist() == [0.5, math.inf, math.inf]


def features_with_ties(rng, num, dim=4, distinct=7):
    """Features drawn from a few distinct vectors: equal features give exactly tied distances."""
    palette = torch.from_numpy(rng.normal(size=(distinct, dim)).astype(np.float32))
    return palette[torch.from_numpy(rng.integers(0, distinct, num))]


def case(seed, num_q=12, num_g=40, num_ids=5):
    rng = np.random.default_rng(seed)
    features = features_with_ties(rng, num_q + num_g)
    q_pids, g_pids, q_camids, g_camids = random_ids(rng, num_q, num_g, num_ids)
    pids = torch.from_numpy(np.concatenate([q_pids, g_pids]))
    camids = torch.from_numpy(np.concatenate([q_camids, g_camids]))
    return features, pids, camids, num_q


@pytest.mark.parametrize("seed", range(3))
def test_rank_lists_cmc_and_ap_are_the_metrics(seed):
    features, pids, camids, nq = case(seed)
    analysis = analyze_ranking(features, pids, camids, nq, top_k=6, max_rank=50)
    distmat = compute_distmat(features[:nq], features[nq:]).numpy()
    p, c = pids.numpy(), camids.numpy()
    cmc, all_ap, all_inp = evaluate_rank(distmat, p[:nq], p[nq:], c[:nq], c[nq:], max_rank=50)
    np.testing.assert_array_equal(analysis.cmc, cmc)  # 40 gallery items: CMC of length 40
    assert analysis.cmc.shape == (40,)
    np.testing.assert_array_equal(analysis.ap[analysis.valid], all_ap)
    np.testing.assert_array_equal(analysis.inp[analysis.valid], all_inp)
    assert np.isnan(analysis.ap[~analysis.valid]).all()

    expected, dropped = loop_rank_lists(distmat, p[:nq], p[nq:], c[:nq], c[nq:], 6)
    lists = analysis.rank_lists
    for q, items in enumerate(expected):
        assert lists.columns[q].tolist() == [col for col, _ in items]
        assert lists.matches[q].tolist() == [m for _, m in items]
        np.testing.assert_allclose(
            lists.distances[q].numpy(), distmat[q, [col for col, _ in items]], rtol=0, atol=0
        )
    assert lists.num_dropped.tolist() == dropped
    # The first match in a list sits at the metric's first-hit rank.
    ranking = RankAccumulator(*to_tensors(p[nq:], c[nq:]))
    ranking.add(torch.from_numpy(distmat), *to_tensors(p[:nq], c[:nq]))
    first_rank = ranking._cat("first_rank")
    for q in range(nq):
        hits = lists.matches[q].nonzero()
        if analysis.valid[q] and first_rank[q] <= 6:
            assert int(hits[0]) + 1 == int(first_rank[q])
        else:
            assert hits.numel() == 0


@pytest.mark.parametrize(
    "settings",
    [
        EvalSettings(),
        EvalSettings(metric="euclidean", roc=True, roc_fprs=(0.01, 0.1, 0.5)),
        EvalSettings(aqe=True, aqe_k=2, rerank=True, rerank_k1=4, rerank_k2=2, official_ap=True),
        EvalSettings(chunk_size=5, roc=True),
    ],
    ids=["default", "euclidean_roc", "aqe_rerank_official", "chunks_roc"],
)
def test_results_equal_the_evaluators(settings):
    features, pids, camids, nq = case(7)
    analysis = analyze_ranking(features, pids, camids, nq, settings, top_k=3, max_rank=5)
    assert analysis.results == score_features(features, pids, camids, nq, settings)
    assert analysis.cmc.shape == (5,)  # the plotted ranks; Rank-10 still the metric's


def test_roc_points_are_the_roc_accumulators():
    features, pids, camids, nq = case(3, num_q=20, num_g=60)
    settings = EvalSettings(roc=True, roc_fprs=(0.003, 0.05))
    analysis = analyze_ranking(features, pids, camids, nq, settings)
    assert set(settings.roc_fprs) <= set(analysis.roc_fprs)
    assert list(analysis.roc_fprs) == sorted(analysis.roc_fprs)
    roc = RocAccumulator(GalleryIndex(pids[nq:], camids[nq:]), pids[:nq], analysis.roc_fprs)
    roc.add(compute_distmat(features[:nq], features[nq:]), pids[:nq], camids[:nq])
    assert analysis.roc_tprs == roc.tprs()
    assert analysis.roc_tprs[-1] == 1.0  # the grid reaches FPR 1 on a small set
    num_negatives = int((pids[:nq, None] != pids[None, nq:]).sum())
    assert analysis.num_negatives == num_negatives
    assert analysis.roc_fprs[0] == pytest.approx(1 / num_negatives)


def test_roc_grid_stops_at_the_memory_budget_and_keeps_configured_rates():
    grid = roc_curve_fprs(10**9, configured=(0.5,), budget=10**6, per_decade=2)
    assert grid[0] == pytest.approx(1e-9) and 0.5 in grid
    assert max(f for f in grid if f != 0.5) == pytest.approx(1e-3)
    assert len(grid) == 2 * 6 + 1 + 1


def test_pair_histograms_count_every_pair_exactly():
    features, pids, camids, nq = case(5, num_q=15, num_g=50)
    analysis = analyze_ranking(features, pids, camids, nq, EvalSettings(chunk_size=4))
    distmat = compute_distmat(features[:nq], features[nq:]).double().numpy()
    p, c = pids.numpy(), camids.numpy()
    same = p[:nq, None] == p[None, nq:]
    positive = distmat[same & (c[:nq, None] != c[None, nq:])]
    negative = distmat[~same]
    for hist, values in ((analysis.positives, positive), (analysis.negatives, negative)):
        counts, _ = np.histogram(values, hist.edges())
        np.testing.assert_array_equal(hist.counts.numpy(), counts)
        assert hist.total == values.size
    edges, (pos, neg) = common_bins([analysis.positives, analysis.negatives], 10)
    assert len(edges) <= 11
    np.testing.assert_array_equal(pos, np.histogram(positive, edges)[0])
    np.testing.assert_array_equal(neg, np.histogram(negative, edges)[0])


@pytest.mark.parametrize("seed", range(4))
def test_histogram_merges_exactly_whatever_the_order(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1e-3, 50), rng.normal(3, 2, 500), [-7.25, 40.0]])
    rng.shuffle(values)
    hist = DistanceHistogram(max_bins=16)
    for part in np.array_split(values, 9):
        hist.add(torch.from_numpy(part))
    assert hist.counts.shape[0] <= 16
    assert math.log2(hist.width) == round(math.log2(hist.width))
    counts, _ = np.histogram(values, hist.edges())
    np.testing.assert_array_equal(hist.counts.numpy(), counts)
    hist.add(torch.tensor([math.inf]))
    assert hist.num_infinite == 1 and hist.total == values.size
    coarse = hist.coarsened(hist.width * 4)
    np.testing.assert_array_equal(coarse.counts.numpy(), np.histogram(values, coarse.edges())[0])
    with pytest.raises(ValueError, match="power of two"):
        hist.coarsened(hist.width * 3)
    with pytest.raises(ValueError, match="NaN"):
        hist.add(torch.tensor([math.nan]))


def test_histogram_of_one_repeated_value():
    hist = DistanceHistogram()
    hist.add(torch.full((5,), 0.25))
    assert hist.total == 5 and hist.counts.tolist() == [5]
    assert hist.edges()[0] <= 0.25 < hist.edges()[1]


def test_query_order():
    features, pids, camids, nq = case(11, num_q=20)
    pids[[0, 7]] = 99  # identities absent from the gallery: the metric skips these queries
    analysis = analyze_ranking(features, pids, camids, nq)
    ap, valid = analysis.ap, analysis.valid
    assert valid.sum() == nq - 2 and not valid[0] and not valid[7]
    worst = analysis.query_order("worst")
    best = analysis.query_order("best")
    expected_worst = sorted(np.flatnonzero(valid), key=lambda q: (ap[q], q))
    expected_best = sorted(np.flatnonzero(valid), key=lambda q: (-ap[q], q))
    assert worst.tolist() == expected_worst and best.tolist() == expected_best
    assert analysis.query_order("worst", 3).tolist() == expected_worst[:3]
    shuffled = analysis.query_order("random", seed=4)
    assert sorted(shuffled.tolist()) == np.flatnonzero(valid).tolist()
    assert shuffled.tolist() == analysis.query_order("random", seed=4).tolist()
    assert shuffled.tolist() != analysis.query_order("random", seed=5).tolist()
    with pytest.raises(InvalidArgument, match="order must be one of worst, best, random"):
        analysis.query_order("median")


def test_histogram_of_a_block_less_some_of_its_values():
    rng = np.random.default_rng(0)
    block = torch.from_numpy(rng.normal(1.0, 0.3, size=(6, 50)).astype(np.float32))
    block[0, 0], block[1, 1] = -5.0, 9.0  # the extremes are left out: the range shrinks back
    rows, cols = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 7, 8])
    hist = DistanceHistogram(max_bins=64)
    hist.add(block, minus=block[rows, cols])
    keep = torch.ones_like(block, dtype=torch.bool)
    keep[rows, cols] = False
    expected = block[keep].double().numpy()
    np.testing.assert_array_equal(hist.counts.numpy(), np.histogram(expected, hist.edges())[0])
    assert hist.counts[0] > 0 and hist.counts[-1] > 0  # no empty bins at the ends
    assert hist.edges()[0] > -5.0 and hist.edges()[-1] < 9.0

    everything = DistanceHistogram()
    everything.add(block[:1], minus=block[0])
    assert everything.total == 0 and everything.counts.numel() == 0
    everything.add(torch.tensor([0.5, 0.75]))
    assert everything.total == 2
    with pytest.raises(ValueError, match="minus must hold values taken from values"):
        DistanceHistogram().add(torch.tensor([1.0, 2.0]), minus=torch.tensor([1.5]))
