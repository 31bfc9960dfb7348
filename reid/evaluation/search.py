"""Top-k gallery search for retrieval tools, when a full ranking is not needed.

Backends (SEARCH_REGISTRY): ``torch`` (exact, chunked matrix products, CPU or CUDA, no extra
dependency) and ``faiss`` (a flat faiss index, CPU or GPU). faiss is imported only when the
``faiss`` backend is built; the metric path (``evaluate_rank``) never needs it.

Distances follow TEST.METRIC (see ``reid.evaluation.distance``): cosine = 1 - cos, euclidean =
squared Euclidean; results are sorted by distance, nearest first.
"""

from __future__ import annotations

from typing import Any

import torch

from reid.utils.registry import Registry

from .distance import build_distance
from .rank import auto_chunk_size, iter_chunks

__all__ = [
    "SEARCH_REGISTRY",
    "TorchSearcher",
    "FaissSearcher",
    "build_searcher",
    "search_topk",
    "import_faiss",
    "topk_smallest",
]

SEARCH_REGISTRY = Registry("SEARCH")


def import_faiss() -> Any:
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss  # noqa: PLC0415  (optional dependency, imported on demand)
    except ImportError as e:
        raise ImportError(
            "the 'faiss' search backend needs the faiss package, which is not installed: "
            "pip install faiss-cpu (or `pip install -e .[faiss]`; faiss-gpu for GPU indexes), "
            "or use the 'torch' backend, which needs nothing extra"
        ) from e
    return faiss


def topk_smallest(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest entries of each row and their columns, ordered by value, then column.

    Which of several entries tied at the k-th smallest value are kept is torch.topk's choice.

    >>> values, columns = topk_smallest(torch.tensor([[0.75, 0.25, 0.5, 0.25]]), k=3)
    >>> values.tolist(), columns.tolist()
    ([[0.25, 0.25, 0.5]], [[1, 3, 2]])
    """
    values, index = torch.topk(values, k, dim=1, largest=False, sorted=True)
    by_index = torch.sort(index, dim=1, stable=True)
    values, index = values.gather(1, by_index.indices), by_index.values
    order = torch.sort(values, dim=1, stable=True).indices
    return values.gather(1, order), index.gather(1, order)


def _check_k(k: int, num_gallery: int) -> None:
    if not 1 <= k <= num_gallery:
        raise ValueError(f"k must lie in [1, {num_gallery}] (the gallery size), got {k}")


class TorchSearcher:
    """Exact top-k by chunks of queries: one chunk x gallery distance block at a time.

    Args:
        gallery: Gallery features, one row each.
        metric: A registered distance ("cosine" or "euclidean").
        use_gpu: Search on CUDA (else on the gallery's device).
        chunk_size: Queries per chunk (default: from the budget of ``CHUNK_ELEMENTS``).
    """

    def __init__(
        self,
        gallery: torch.Tensor,
        metric: str = "cosine",
        use_gpu: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        self.distance = build_distance(metric)
        device = torch.device("cuda") if use_gpu else gallery.device
        self.gallery = self.distance.prepare(gallery.float().to(device))
        self.chunk_size = chunk_size

    def search(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, gallery indices) of each query's ``k`` nearest, nearest first."""
        n_g = self.gallery.shape[0]
        _check_k(k, n_g)
        query = self.distance.prepare(query.float().to(self.gallery.device))
        step = self.chunk_size or auto_chunk_size(n_g, self.gallery.device)
        dists, indices = [], []
        for start, end in iter_chunks(query.shape[0], step):
            values, index = topk_smallest(self.distance.pairwise(query[start:end], self.gallery), k)
            dists.append(values)
            indices.append(index)
        return torch.cat(dists), torch.cat(indices)


class FaissSearcher:
    """A flat (exact) faiss index: inner product for cosine, L2 for euclidean.

    Args:
        gallery: Gallery features, one row each.
        metric: "cosine" or "euclidean".
        use_gpu: Put the index on GPU 0 (needs faiss-gpu).
        chunk_size: Unused (faiss batches itself); accepted so that every backend takes the
            same arguments.
    """

    def __init__(
        self,
        gallery: torch.Tensor,
        metric: str = "cosine",
        use_gpu: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        faiss = import_faiss()
        if metric not in ("cosine", "euclidean"):
            raise ValueError(
                f"the faiss backend supports the metrics 'cosine' and 'euclidean', got {metric!r}"
            )
        self.metric = metric
        self.distance = build_distance(metric)
        vectors = self.distance.prepare(gallery.float()).cpu().contiguous().numpy()
        index = (
            faiss.IndexFlatIP(vectors.shape[1])
            if metric == "cosine"
            else faiss.IndexFlatL2(vectors.shape[1])
        )
        if use_gpu:
            if not hasattr(faiss, "StandardGpuResources"):
                raise RuntimeError(
                    "use_gpu=True, but the installed faiss has no GPU support (install faiss-gpu)"
                )
            self._resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._resources, 0, index)
        index.add(vectors)
        self.index = index
        self.num_gallery = vectors.shape[0]

    def search(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, gallery indices) of each query's ``k`` nearest, nearest first."""
        _check_k(k, self.num_gallery)
        vectors = self.distance.prepare(query.float()).cpu().contiguous().numpy()
        scores, index = self.index.search(vectors, k)
        scores_t = torch.from_numpy(scores)
        dist = 1.0 - scores_t if self.metric == "cosine" else scores_t.clamp(min=0.0)
        return dist, torch.from_numpy(index).long()


SEARCH_REGISTRY.register(TorchSearcher, name="torch")
SEARCH_REGISTRY.register(FaissSearcher, name="faiss")


def build_searcher(
    gallery: torch.Tensor,
    metric: str = "cosine",
    backend: str = "torch",
    use_gpu: bool = False,
    chunk_size: int | None = None,
) -> Any:
    """An index over ``gallery`` with ``search(query, k) -> (distances, indices)``.

    Args:
        gallery: Gallery features, one row each.
        metric: A registered distance ("cosine" or "euclidean").
        backend: A registered backend: "torch" (exact, no extra dependency) or "faiss".
        use_gpu: Search on the GPU.
        chunk_size: Queries per chunk of the torch backend.
    """
    return SEARCH_REGISTRY.get(backend)(
        gallery, metric=metric, use_gpu=use_gpu, chunk_size=chunk_size
    )


def search_topk(
    query: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    metric: str = "cosine",
    backend: str = "torch",
    use_gpu: bool = False,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, gallery indices) of every query's ``k`` nearest gallery items, nearest first.

    Args:
        query: Query features, one row each.
        gallery, metric, backend, use_gpu, chunk_size: As :func:`build_searcher` takes them.

    >>> query = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    >>> gallery = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    >>> distances, indices = search_topk(query, gallery, k=2, metric="euclidean")
    >>> distances.tolist(), indices.tolist()
    ([[1.0, 4.0], [1.0, 4.0]], [[0, 1], [2, 0]])
    """
    return build_searcher(gallery, metric, backend, use_gpu, chunk_size).search(query, k)
