"""The classic CUHK03 single-gallery-shot CMC."""

import itertools

import numpy as np
import pytest

from reid.config import InvalidArgument
from reid.evaluation.rank import evaluate_rank


def test_equals_the_standard_cmc_when_every_identity_has_one_kept_image():
    rng = np.random.default_rng(0)
    g_pids = np.arange(12)
    g_camids = np.ones(12, dtype=np.int64)
    q_pids = rng.permutation(12)[:8]
    q_camids = np.zeros(8, dtype=np.int64)
    distmat = rng.integers(0, 5, size=(8, 12)).astype(np.float64)  # ties broken by gallery index
    standard = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    classic = evaluate_rank(
        distmat, q_pids, g_pids, q_camids, g_camids, use_metric_cuhk03=True, cuhk03_repeats=3
    )
    np.testing.assert_allclose(classic[0], standard[0])
    np.testing.assert_allclose(classic[1], standard[1])  # AP stays the full-gallery one
    np.testing.assert_allclose(classic[2], standard[2])


def expected_classic_cmc(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Average over every way of picking one image per identity (the query's own among its kept
    ones)."""
    identities = np.unique(g_pids)
    cmcs = []
    for q in range(distmat.shape[0]):
        options = []
        for pid in identities:
            members = np.flatnonzero(g_pids == pid)
            if pid == q_pids[q]:
                members = members[g_camids[members] != q_camids[q]]
            options.append(members)
        if len(options[list(identities).index(q_pids[q])]) == 0:
            continue
        total = np.zeros(max_rank)
        combos = list(itertools.product(*options))
        for combo in combos:
            combo = np.array(combo)
            order = combo[np.lexsort((combo, distmat[q, combo]))]
            rank = int(np.flatnonzero(g_pids[order] == q_pids[q])[0]) + 1
            total += np.arange(1, max_rank + 1) >= rank
        cmcs.append(total / len(combos))
    return np.mean(cmcs, 0)


def test_converges_to_the_expectation_over_draws():
    rng = np.random.default_rng(1)
    g_pids = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    g_camids = np.array([0, 1, 0, 1, 1, 0, 1, 1])
    q_pids, q_camids = np.array([0, 1, 2, 3]), np.array([0, 0, 1, 0])
    distmat = rng.random((4, 8))
    expected = expected_classic_cmc(distmat, q_pids, g_pids, q_camids, g_camids, 8)
    cmc, _, _ = evaluate_rank(
        distmat, q_pids, g_pids, q_camids, g_camids, use_metric_cuhk03=True, cuhk03_repeats=4000
    )
    np.testing.assert_allclose(cmc, expected, atol=0.02)
    assert not np.allclose(cmc, evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)[0])


def test_seeded_and_independent_of_chunking():
    rng = np.random.default_rng(2)
    distmat = rng.random((20, 60))
    q_pids, g_pids = rng.integers(0, 10, 20), rng.integers(0, 10, 60)
    q_camids, g_camids = rng.integers(0, 2, 20), rng.integers(0, 2, 60)
    args = (distmat, q_pids, g_pids, q_camids, g_camids)
    a = evaluate_rank(*args, use_metric_cuhk03=True, cuhk03_seed=5, chunk_size=3)[0]
    b = evaluate_rank(*args, use_metric_cuhk03=True, cuhk03_seed=5)[0]
    c = evaluate_rank(*args, use_metric_cuhk03=True, cuhk03_seed=6)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(InvalidArgument, match="repeats must be >= 1"):
        evaluate_rank(*args, use_metric_cuhk03=True, cuhk03_repeats=0)
