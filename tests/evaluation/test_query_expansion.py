"""Alpha query expansion against a per-feature loop of fastreid's aqe."""

import numpy as np
import pytest
import torch

from reid.config import InvalidArgument
from reid.evaluation.query_expansion import alpha_query_expansion


def loop_aqe(query, gallery, qe_times, qe_k, alpha):
    feats = np.concatenate([query, gallery]).astype(np.float64)
    for _ in range(qe_times):
        normed = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        expanded = []
        for i in range(len(feats)):
            sims = normed @ normed[i]
            top = np.argsort(-sims, kind="stable")[:qe_k]
            expanded.append(np.mean(feats[top] * (sims[top] ** alpha)[:, None], axis=0))
        feats = np.stack(expanded)
    return feats[: len(query)], feats[len(query) :]


@pytest.mark.parametrize(
    "qe_times,qe_k,alpha,chunk", [(1, 5, 3.0, None), (2, 3, 1.0, 4), (1, 1, 3.0, 7)]
)
def test_matches_loop(qe_times, qe_k, alpha, chunk):
    rng = np.random.default_rng(qe_k)
    q = rng.normal(size=(6, 5)).astype(np.float32) + 2.0  # mostly positive similarities
    g = rng.normal(size=(15, 5)).astype(np.float32) + 2.0
    got_q, got_g = alpha_query_expansion(
        torch.from_numpy(q), torch.from_numpy(g), qe_times, qe_k, alpha, chunk
    )
    want_q, want_g = loop_aqe(q, g, qe_times, qe_k, alpha)
    np.testing.assert_allclose(got_q.numpy(), want_q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_g.numpy(), want_g, rtol=1e-5, atol=1e-5)


def test_k1_alpha0_is_identity():
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    got_q, got_g = alpha_query_expansion(q, g, qe_times=1, qe_k=1, alpha=0.0)
    torch.testing.assert_close(got_q, q)
    torch.testing.assert_close(got_g, g)


def test_bad_settings():
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(InvalidArgument, match="qe_k must lie in \\[1, 8\\]"):
        alpha_query_expansion(q, g, qe_k=9)
    with pytest.raises(InvalidArgument, match="qe_times must be >= 1"):
        alpha_query_expansion(q, g, qe_times=0)
