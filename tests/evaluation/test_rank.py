"""evaluate_rank against a plain per-query loop, hand-computed cases and bad input."""

import numpy as np
import pytest
import torch

from reid.evaluation.rank import evaluate_rank


def loop_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, official=False):
    """One query at a time: stable sort, drop same pid + camid, read the metrics off the hits."""
    distmat = np.asarray(distmat, dtype=np.float64)
    num_g = distmat.shape[1]
    max_rank = min(max_rank, num_g)
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        hits = g_pids[order][keep] == q_pids[q]
        if not hits.any():
            continue
        cmc = np.ones(max_rank)
        first = int(np.argmax(hits))
        cmc[:first] = 0.0
        all_cmc.append(cmc)
        ranks = np.flatnonzero(hits) + 1
        found = np.arange(1, len(ranks) + 1)
        if official:
            previous = np.where(ranks > 1, (found - 1) / np.maximum(ranks - 1, 1), 1.0)
            all_ap.append(np.mean((previous + found / ranks) / 2))
        else:
            all_ap.append(np.mean(found / ranks))
        all_inp.append(len(ranks) / ranks[-1])
    return np.mean(all_cmc, 0), np.array(all_ap), np.array(all_inp)


def random_case(rng, num_q, num_g, ties, num_ids=6):
    if ties:
        distmat = rng.integers(0, 4, size=(num_q, num_g)).astype(np.float64)
    else:
        distmat = rng.random((num_q, num_g))
    q_pids = rng.integers(-1, num_ids, num_q)  # -1 and 0: junk / distractor style ids
    g_pids = rng.integers(-1, num_ids, num_g)
    q_camids = rng.integers(0, 3, num_q)
    g_camids = rng.integers(0, 3, num_g)
    return distmat, q_pids, g_pids, q_camids, g_camids


def assert_same(result, reference):
    for got, want in zip(result, reference):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [True, False])
def test_matches_loop_on_random_inputs(seed, ties):
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(5, 40)), int(rng.integers(3, 90))  # often fewer than max_rank
    case = random_case(rng, num_q, num_g, ties)
    reference = loop_reference(*case)
    for chunk in (1, 3, None):
        assert_same(evaluate_rank(*case, chunk_size=chunk), reference)
    assert_same(evaluate_rank(*case, official_ap=True), loop_reference(*case, official=True))
    assert_same(evaluate_rank(*case, max_rank=7), loop_reference(*case, max_rank=7))


def test_matches_loop_at_a_larger_size_with_float32_and_torch_input():
    rng = np.random.default_rng(7)
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(
        rng, 150, 3000, ties=False, num_ids=100
    )
    distmat = distmat.astype(np.float32)
    distmat[:, ::7] = np.round(distmat[:, ::7], 2)  # ties between far-apart columns
    reference = loop_reference(distmat, q_pids, g_pids, q_camids, g_camids)
    as_tensor = torch.from_numpy(distmat).requires_grad_()  # e.g. straight from a model's features
    result = evaluate_rank(
        as_tensor, torch.from_numpy(q_pids), g_pids, q_camids.tolist(), torch.from_numpy(g_camids)
    )
    assert_same(result, reference)


def test_exact_with_values_a_few_ulps_apart_and_infinities():
    rng = np.random.default_rng(3)
    base = np.float32(0.25)
    steps = np.nextafter(base, np.float32(1), dtype=np.float32) - base
    distmat = (base + steps * rng.integers(0, 5, size=(20, 200))).astype(np.float32)
    distmat[:, :3] = [np.inf, -np.inf, 1e30]
    distmat[:, 5] = -0.0
    distmat[:, 6] = 0.0
    q_pids, g_pids = rng.integers(0, 4, 20), rng.integers(0, 4, 200)
    q_camids, g_camids = rng.integers(0, 2, 20), rng.integers(0, 2, 200)
    case = (distmat, q_pids, g_pids, q_camids, g_camids)
    assert_same(evaluate_rank(*case), loop_reference(*case))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes(dtype):
    rng = np.random.default_rng(11)
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(rng, 30, 60, ties=False)
    distmat = distmat.astype(dtype)
    case = (distmat, q_pids, g_pids, q_camids, g_camids)
    assert_same(
        evaluate_rank(*case),
        loop_reference(distmat.astype(np.float64), q_pids, g_pids, q_camids, g_camids),
    )


def test_hand_computed_ap_and_official_ap():
    # Gallery by distance: junk (pid 1, same camera: dropped), hit, miss, hit, miss.
    distmat = np.array([[0.05, 0.1, 0.2, 0.3, 0.4]])
    g_pids = np.array([1, 1, 2, 1, 3])
    g_camids = np.array([0, 1, 1, 2, 1])
    q_pids, q_camids = np.array([1]), np.array([0])
    cmc, ap, inp = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    np.testing.assert_allclose(ap, [(1 / 1 + 2 / 3) / 2])  # 0.8333
    np.testing.assert_allclose(inp, [2 / 3])
    np.testing.assert_allclose(cmc, [1.0] * 5)
    assert round(float(ap[0]), 4) == 0.8333
    _, official, _ = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, official_ap=True)
    # Trapezoids: (1 + 1) / 2 * 1/2 + (1/2 + 2/3) / 2 * 1/2
    np.testing.assert_allclose(official, [0.5 + 7 / 24])
    assert round(float(official[0]), 4) == 0.7917


def test_ties_follow_gallery_index():
    distmat = np.array([[0.5, 0.5, 0.5, 0.1]])
    g_pids = np.array([2, 1, 1, 3])
    cmc, ap, inp = evaluate_rank(
        distmat, np.array([1]), g_pids, np.array([0]), np.array([1, 1, 1, 1])
    )
    # Order: idx 3 (0.1), then idx 0, 1, 2 by index: hits at ranks 3 and 4.
    np.testing.assert_allclose(cmc, [0, 0, 1, 1])
    np.testing.assert_allclose(ap, [(1 / 3 + 2 / 4) / 2])
    np.testing.assert_allclose(inp, [2 / 4])


def test_cmc_length_and_skipped_queries():
    distmat = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    q_pids, g_pids = np.array([1, 9]), np.array([0, 1, 0])  # pid 9 is not in the gallery
    cmc, ap, inp = evaluate_rank(
        distmat, q_pids, g_pids, np.array([0, 0]), np.array([1, 1, 1]), max_rank=10
    )
    assert cmc.shape == (3,)
    assert ap.shape == inp.shape == (1,)
    np.testing.assert_allclose(cmc, [0, 1, 1])


def test_all_queries_skipped_is_an_error():
    distmat = np.zeros((2, 3))
    with pytest.raises(ValueError, match="none of the 2 queries has a relevant gallery item"):
        evaluate_rank(
            distmat, np.array([1, 2]), np.array([1, 1, 3]), np.array([0, 0]), np.array([0, 0, 0])
        )


def test_nan_is_an_error():
    distmat = np.array([[0.1, np.nan, 0.3]])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(
            distmat, np.array([1]), np.array([1, 2, 3]), np.array([0]), np.array([1, 1, 1])
        )


def test_bad_inputs_are_named():
    distmat = np.zeros((2, 3))
    ok = dict(
        q_pids=np.array([1, 2]),
        g_pids=np.array([1, 2, 3]),
        q_camids=np.array([0, 0]),
        g_camids=np.array([1, 1, 1]),
    )
    with pytest.raises(TypeError, match="g_pids must hold integer ids"):
        evaluate_rank(distmat, **{**ok, "g_pids": np.array(["a", "b", "c"])})
    with pytest.raises(TypeError, match="q_camids must hold integer ids"):
        evaluate_rank(distmat, **{**ok, "q_camids": np.array([0.5, 1.0])})
    with pytest.raises(ValueError, match="q_pids must be 1-D with 2 entries"):
        evaluate_rank(distmat, **{**ok, "q_pids": np.array([1, 2, 3])})
    with pytest.raises(ValueError, match="distmat must be 2-D"):
        evaluate_rank(np.zeros(3), **ok)
    with pytest.raises(TypeError, match="floating point"):
        evaluate_rank(np.zeros((2, 3), dtype=np.int64), **ok)
    with pytest.raises(ValueError, match="max_rank must be >= 1"):
        evaluate_rank(distmat, **ok, max_rank=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    case = random_case(rng, 200, 1000, ties=True, num_ids=40)
    cpu = evaluate_rank(*case)
    gpu = evaluate_rank(torch.from_numpy(case[0]).cuda(), *case[1:])
    assert_same(gpu, cpu)


def test_thread_setting_is_restored(monkeypatch):
    from reid.evaluation import rank as rank_module

    case = random_case(np.random.default_rng(9), 10, 20, ties=False)
    before = torch.get_num_threads()
    seen = []
    original = rank_module.rank_relevant

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(rank_module, "rank_relevant", spy)
    evaluate_rank(*case, num_threads=1)
    evaluate_rank(*case, num_threads=None)
    assert seen == [1, before]
    assert torch.get_num_threads() == before
