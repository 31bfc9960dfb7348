"""k-reciprocal re-ranking against a transcription of the paper's steps (Zhong et al. 2017)."""

import numpy as np
import pytest
import torch

from reid.config import InvalidArgument
from reid.evaluation.distance import build_distance
from reid.evaluation.rerank import FeatureDistances, MatrixDistances, re_ranking, rerank_chunks


def paper_rerank(q_g, q_q, g_g, k1, k2, lambda_value):
    """The steps of the paper, one item at a time, as its reference code performs them."""
    n_q = q_g.shape[0]
    original = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0)
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(original / np.max(original, axis=0))
    num = original.shape[0]
    initial_rank = np.argsort(original, axis=1, kind="stable")

    def reciprocal(i, k):
        forward = initial_rank[i, : k + 1]
        backward = initial_rank[forward, : k + 1]
        return forward[np.where(backward == i)[0]]

    half = int(np.around(k1 / 2.0))
    V = np.zeros_like(original, dtype=np.float32)
    for i in range(num):
        r = reciprocal(i, k1)
        expansion = r
        for candidate in r:
            r_half = reciprocal(candidate, half)
            if len(np.intersect1d(r_half, r)) > 2.0 / 3 * len(r_half):
                expansion = np.append(expansion, r_half)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    if k2 != 1:
        V = np.stack([np.mean(V[initial_rank[i, :k2], :], axis=0) for i in range(num)])
    jaccard = np.zeros((n_q, num), dtype=np.float32)
    for i in range(n_q):
        overlap = np.zeros(num, dtype=np.float32)
        for k in np.where(V[i] != 0)[0]:
            holders = np.where(V[:, k] != 0)[0]
            overlap[holders] += np.minimum(V[i, k], V[holders, k])
        jaccard[i] = 1 - overlap / (2.0 - overlap)
    final = jaccard * (1 - lambda_value) + original[:n_q] * lambda_value
    return final[:, n_q:]


def blocks(num_q, num_g, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(num_q, dim)).astype(np.float32)
    g = rng.normal(size=(num_g, dim)).astype(np.float32)

    def euclid(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(np.float32)

    return euclid(q, g), euclid(q, q), euclid(g, g), q, g


@pytest.mark.parametrize("k1,k2,lam", [(6, 3, 0.3), (20, 6, 0.3), (5, 1, 0.5), (4, 2, 0.0)])
def test_matches_the_paper_transcription(k1, k2, lam):
    q_g, q_q, g_g, _, _ = blocks(9, 40, seed=k1)
    expected = paper_rerank(q_g, q_q, g_g, k1, k2, lam)
    got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert isinstance(got, np.ndarray) and got.shape == (9, 40)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_chunking_does_not_change_the_result():
    q_g, q_q, g_g, _, _ = blocks(12, 30, seed=3)
    whole = re_ranking(q_g, q_q, g_g, k1=6, k2=3)
    pieces = list(rerank_chunks(MatrixDistances(q_g, q_q, g_g), k1=6, k2=3, chunk_size=2))
    assert [(s, e) for s, e, _ in pieces][:2] == [(0, 2), (2, 4)]
    np.testing.assert_allclose(torch.cat([c for _, _, c in pieces]).numpy(), whole, atol=1e-7)


def test_features_source_matches_matrices():
    q_g, q_q, g_g, q, g = blocks(7, 25, seed=4)
    # The squared Euclidean distance of the features is what MatrixDistances gets squared here.
    distance = build_distance("euclidean")
    source = FeatureDistances(torch.from_numpy(q), torch.from_numpy(g), distance)
    from_features = torch.cat([c for _, _, c in rerank_chunks(source, k1=5, k2=2)]).numpy()
    expected = re_ranking(q_g**2, q_q**2, g_g**2, k1=5, k2=2)
    np.testing.assert_allclose(from_features, expected, atol=1e-5)


def test_torch_input_gives_torch_output_and_bad_shapes_fail():
    q_g, q_q, g_g, _, _ = blocks(5, 20, seed=5)
    out = re_ranking(
        torch.from_numpy(q_g), torch.from_numpy(q_q), torch.from_numpy(g_g), k1=4, k2=2
    )
    assert isinstance(out, torch.Tensor) and out.shape == (5, 20)
    with pytest.raises(ValueError, match="g_g_dist must be 20 x 20"):
        re_ranking(q_g, q_q, g_g[:5], k1=4)
    with pytest.raises(InvalidArgument, match=r"k1 must be smaller than .* items \(25\), got 25"):
        re_ranking(q_g, q_q, g_g, k1=25)
    with pytest.raises(InvalidArgument, match="lambda_value must lie in"):
        re_ranking(q_g, q_q, g_g, k1=4, lambda_value=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    q_g, q_q, g_g, _, _ = blocks(9, 40, seed=6)
    cpu = re_ranking(q_g, q_q, g_g, k1=6, k2=3)
    gpu = re_ranking(*(torch.from_numpy(x).cuda() for x in (q_g, q_q, g_g)), k1=6, k2=3)
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=1e-5)
