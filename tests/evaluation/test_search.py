"""Top-k search: the torch backend against a full sort, faiss against torch, faiss missing."""

import sys

import pytest
import torch

from reid.evaluation.distance import compute_distmat
from reid.evaluation.search import search_topk


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_torch_backend_matches_a_full_sort(metric):
    q, g = torch.randn(9, 6), torch.randn(50, 6)
    dist, idx = search_topk(q, g, k=7, metric=metric, chunk_size=4)
    full = compute_distmat(q, g, metric)
    order = torch.sort(full, dim=1, stable=True).indices[:, :7]
    torch.testing.assert_close(idx, order)
    torch.testing.assert_close(dist, full.gather(1, order))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_faiss_backend_matches_torch(metric):
    pytest.importorskip("faiss")
    q, g = torch.randn(8, 6), torch.randn(40, 6)
    dist_f, idx_f = search_topk(q, g, k=5, metric=metric, backend="faiss")
    dist_t, idx_t = search_topk(q, g, k=5, metric=metric, backend="torch")
    torch.testing.assert_close(idx_f, idx_t)
    torch.testing.assert_close(dist_f, dist_t, atol=1e-4, rtol=1e-4)


def test_missing_faiss_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        search_topk(torch.randn(2, 3), torch.randn(4, 3), k=2, backend="faiss")
    dist, idx = search_topk(torch.randn(2, 3), torch.randn(4, 3), k=2)  # torch backend unaffected
    assert idx.shape == (2, 2)


def test_bad_k_and_backend():
    with pytest.raises(ValueError, match="k must lie in \\[1, 4\\]"):
        search_topk(torch.randn(2, 3), torch.randn(4, 3), k=5)
    with pytest.raises(KeyError, match="registered names: faiss, torch"):
        search_topk(torch.randn(2, 3), torch.randn(4, 3), k=1, backend="annoy")
