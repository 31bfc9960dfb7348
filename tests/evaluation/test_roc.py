"""TPR at fixed FPR against a brute force over every threshold."""

import math

import numpy as np
import pytest
import torch

from reid.evaluation.rank import GalleryIndex
from reid.evaluation.roc import RocAccumulator, roc_key


def brute_force(distmat, q_pids, g_pids, q_camids, g_camids, fpr):
    pos, neg = [], []
    for q in range(distmat.shape[0]):
        for g in range(distmat.shape[1]):
            if q_pids[q] == g_pids[g]:
                if q_camids[q] != g_camids[g]:
                    pos.append(distmat[q, g])
            else:
                neg.append(distmat[q, g])
    pos, neg = np.array(pos), np.array(neg)
    best = 0.0
    for t in np.concatenate([[-np.inf], np.unique(np.concatenate([pos, neg]))]):
        if (neg <= t).sum() <= fpr * len(neg):
            best = max(best, (pos <= t).mean())
    return best


def run(distmat, q_pids, g_pids, q_camids, g_camids, fprs, chunk):
    t = {
        k: torch.as_tensor(v) for k, v in dict(q=q_pids, g=g_pids, qc=q_camids, gc=g_camids).items()
    }
    roc = RocAccumulator(GalleryIndex(t["g"], t["gc"]), t["q"], fprs)
    d = torch.as_tensor(distmat)
    for s in range(0, d.shape[0], chunk):
        roc.add(d[s : s + chunk], t["q"][s : s + chunk], t["qc"][s : s + chunk])
    return roc.compute()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk", [1, 5, 100])
def test_matches_brute_force(seed, chunk):
    rng = np.random.default_rng(seed)
    distmat = rng.integers(0, 30, size=(14, 40)).astype(np.float64) / 10  # ties on purpose
    q_pids, g_pids = rng.integers(0, 4, 14), rng.integers(0, 4, 40)
    q_camids, g_camids = rng.integers(0, 2, 14), rng.integers(0, 2, 40)
    fprs = (0.01, 0.05, 0.2, 1.0)
    got = run(distmat, q_pids, g_pids, q_camids, g_camids, fprs, chunk)
    assert list(got) == [roc_key(f) for f in fprs]
    for f in fprs:
        assert got[roc_key(f)] == pytest.approx(
            brute_force(distmat, q_pids, g_pids, q_camids, g_camids, f), abs=1e-12
        )


def test_key_spelling_and_hand_case():
    assert roc_key(1e-4) == "TPR@FPR=1e-04"
    # One query, positives at 0.1 and 0.5; negatives at 0.2, 0.3, 0.4, 0.6.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    g_pids = np.array([1, 2, 3, 4, 1, 5])
    got = run(
        distmat,
        np.array([1]),
        g_pids,
        np.array([0]),
        np.ones(6, dtype=np.int64),
        (0.25, 0.5, 0.75),
        1,
    )
    assert got == {"TPR@FPR=2e-01": 0.5, "TPR@FPR=5e-01": 0.5, "TPR@FPR=8e-01": 1.0}


def test_no_negatives_means_full_tpr_and_bad_rates_fail():
    g = GalleryIndex(torch.tensor([1, 1]), torch.tensor([1, 2]))
    roc = RocAccumulator(g, torch.tensor([1]), (0.1,))
    roc.add(torch.tensor([[0.3, 0.4]]), torch.tensor([1]), torch.tensor([0]))
    assert roc.compute() == {"TPR@FPR=1e-01": 1.0}
    with pytest.raises(ValueError, match="must lie in \\(0, 1\\]"):
        RocAccumulator(g, torch.tensor([1]), (0.0,))
    assert math.isnan(RocAccumulator(g, torch.tensor([1]), (0.5,)).compute()["TPR@FPR=5e-01"])
