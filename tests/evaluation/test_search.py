"""Top-k search: the torch backend against a full sort, faiss against torch, faiss missing; feature
files and the saved, reopened FeatureIndex."""

import os
import sys
import types

import numpy as np
import pytest
import torch

from reid.evaluation.distance import compute_distmat
from reid.evaluation.search import (
    FeatureIndex,
    faiss_gpu_available,
    load_features,
    save_features,
    search_topk,
)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_torch_backend_matches_a_full_sort(metric):
    q, g = torch.randn(9, 6), torch.randn(50, 6)
    dist, idx = search_topk(q, g, k=7, metric=metric, chunk_size=4)
    full = compute_distmat(q, g, metric)
    order = torch.sort(full, dim=1, stable=True).indices[:, :7]
    torch.testing.assert_close(idx, order)
    torch.testing.assert_close(dist, full.gather(1, order))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_faiss_backend_matches_torch(metric, faiss_module):
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


def test_feature_files_round_trip_and_bad_files_are_named(tmp_path):
    features = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    names = ["a/ü 1.jpg", "b.jpg", "c/d.png"]
    path = str(tmp_path / "f.npz")
    save_features(path, features, names, "euclidean")
    assert os.listdir(tmp_path) == ["f.npz"]  # no temporary file left behind
    loaded = load_features(path)
    np.testing.assert_array_equal(loaded.features, features)
    assert loaded.paths == names and loaded.metric == "euclidean"
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickles
        assert sorted(data.files) == ["features", "metric", "paths"]

    with pytest.raises(ValueError, match="must end in .npz"):
        save_features(str(tmp_path / "f.npy"), features, names, "cosine")
    with pytest.raises(ValueError, match=r"one row per path: got \(3, 4\) for 2 paths"):
        save_features(path, features, names[:2], "cosine")
    with pytest.raises(FileNotFoundError, match="feature file not found: .*nope.npz"):
        load_features(str(tmp_path / "nope.npz"))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz: not a readable .npz feature file"):
        load_features(str(tmp_path / "text.npz"))
    np.savez(tmp_path / "other.npz", features=features)
    with pytest.raises(ValueError, match="other.npz: not a feature file .* lacks paths, metric"):
        load_features(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "short.npz", features=features, paths=np.array(names[:2]), metric="cosine")
    with pytest.raises(ValueError, match=r"short.npz: 3 features but paths has shape \(2,\)"):
        load_features(str(tmp_path / "short.npz"))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_feature_index_matches_a_full_sort_and_reopens(tmp_path, metric):
    gallery, query = torch.randn(12, 5), torch.randn(3, 5)
    names = [f"g{i}.jpg" for i in range(12)]
    index = FeatureIndex(gallery, names, metric, use_gpu=False)
    assert len(index) == 12 and index.dim == 5
    found = index.matches(query, 4, ["q0", "q1", "q2"])
    full = compute_distmat(query, gallery, metric)
    order = torch.sort(full, dim=1, stable=True).indices[:, :4]
    for q, entry in enumerate(found):
        assert entry["query"] == f"q{q}"
        assert [m["rank"] for m in entry["matches"]] == [1, 2, 3, 4]
        assert [m["path"] for m in entry["matches"]] == [names[i] for i in order[q]]
        expected = full[q, order[q]].tolist()
        assert [m["distance"] for m in entry["matches"]] == pytest.approx(expected, abs=1e-6)

    index.save(str(tmp_path / "index.npz"))
    reopened = FeatureIndex.load(str(tmp_path / "index.npz"), use_gpu=False)
    assert reopened.metric == metric and reopened.paths == names
    assert reopened.matches(query, 4, ["q0", "q1", "q2"]) == found

    with pytest.raises(ValueError, match=r"query features must be Q x 5 .* got \(3, 4\)"):
        index.search(torch.randn(3, 4), 2)
    with pytest.raises(ValueError, match="k must lie in \\[1, 12\\]"):
        index.search(query, 13)
    with pytest.raises(ValueError, match=r"N >= 1 features .* got \(0, 5\) for 0 names"):
        FeatureIndex(torch.zeros(0, 5), [])
    with pytest.raises(ValueError, match=r"got \(12, 5\) for 11 names"):
        FeatureIndex(gallery, names[:11])


def test_saved_index_reopens_with_faiss(tmp_path, faiss_module):
    gallery, query = torch.randn(30, 8), torch.randn(5, 8)
    names = [f"g{i}" for i in range(30)]
    FeatureIndex(gallery, names, "cosine").save(str(tmp_path / "index.npz"))
    torch_index = FeatureIndex.load(str(tmp_path / "index.npz"), use_gpu=False)
    faiss_index = FeatureIndex.load(str(tmp_path / "index.npz"), backend="faiss")
    assert faiss_index.use_gpu == (
        hasattr(faiss_module, "StandardGpuResources") and faiss_module.get_num_gpus() > 0
    )
    d_t, i_t = torch_index.search(query, 6)
    d_f, i_f = faiss_index.search(query, 6)
    torch.testing.assert_close(i_f, i_t)
    torch.testing.assert_close(d_f, d_t, atol=1e-5, rtol=1e-5)


def test_faiss_gpu_is_used_only_with_gpu_support_and_a_gpu(monkeypatch):
    cpu_build = types.SimpleNamespace()
    monkeypatch.setitem(sys.modules, "faiss", cpu_build)
    assert not faiss_gpu_available()
    gpu_build = types.SimpleNamespace(StandardGpuResources=object, get_num_gpus=lambda: 0)
    monkeypatch.setitem(sys.modules, "faiss", gpu_build)
    assert not faiss_gpu_available()
    gpu_build.get_num_gpus = lambda: 2
    assert faiss_gpu_available()
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert not faiss_gpu_available()
