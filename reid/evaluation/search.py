"""Top-k gallery search for retrieval tools, when a full ranking is not needed.

Backends (SEARCH_REGISTRY): ``torch`` (exact, chunked matrix products, CPU or CUDA, no extra
dependency) and ``faiss`` (a flat faiss index, CPU or GPU). faiss is imported only when the
``faiss`` backend is built; the metric path (``evaluate_rank``) never needs it.

Distances follow TEST.METRIC (see ``reid.evaluation.distance``): cosine = 1 - cos, euclidean =
squared Euclidean; results are sorted by distance, nearest first.

A feature file (``.npz``: ``features`` N x D float32, ``paths`` N strings, ``metric``) is what
``tools/extract_features.py`` writes and what a :class:`FeatureIndex` saves: the index of a gallery
is its features with their names, and reopening it rebuilds the backend's exact (flat) index from
them, which costs one copy of the vectors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reid.utils.file_io import atomic_open
from reid.utils.registry import Registry

from .distance import build_distance
from .rank import auto_chunk_size, iter_chunks

__all__ = [
    "SEARCH_REGISTRY",
    "FeatureFile",
    "FeatureIndex",
    "faiss_gpu_available",
    "load_features",
    "save_features",
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


def faiss_gpu_available() -> bool:
    """Whether faiss is installed with GPU support and sees a GPU (faiss-gpu on a CUDA machine)."""
    try:
        faiss = import_faiss()
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


FEATURES_KEY, PATHS_KEY, METRIC_KEY = "features", "paths", "metric"


@dataclass
class FeatureFile:
    """The contents of a feature file.

    Attributes:
        features: N x D float32.
        paths: The N images' names (their files).
        metric: The distance the features were prepared for (TEST.METRIC).
    """

    features: np.ndarray
    paths: list[str]
    metric: str


def save_features(path: str, features: np.ndarray, paths: Sequence[str], metric: str) -> None:
    """Write a feature file atomically (a reader never sees half of it).

    Args:
        path: The ``.npz`` file.
        features: N x D features.
        paths: The N images' names.
        metric: The distance the features are prepared for ("cosine": L2-normalised).

    Raises:
        ValueError: ``path`` does not end in ``.npz``, or the counts differ.
    """
    if not path.endswith(".npz"):
        raise ValueError(f"a feature file must end in .npz, got {path}")
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(paths):
        raise ValueError(
            f"features must be N x D with one row per path: got {features.shape} for "
            f"{len(paths)} paths"
        )
    arrays: dict[str, Any] = {
        FEATURES_KEY: features,
        PATHS_KEY: np.asarray(list(paths), dtype=np.str_).reshape(len(paths)),
        METRIC_KEY: np.asarray(metric, dtype=np.str_),
    }
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_features(path: str) -> FeatureFile:
    """Read a feature file (no pickles: ``allow_pickle=False``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a feature file; the message names the file and what is wrong.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz feature file: {e}") from e
    missing = [k for k in (FEATURES_KEY, PATHS_KEY, METRIC_KEY) if k not in contents]
    if missing:
        raise ValueError(
            f"{path}: not a feature file (tools/extract_features.py writes one): it lacks "
            f"{', '.join(missing)}"
        )
    features, paths = contents[FEATURES_KEY], contents[PATHS_KEY]
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"{path}: features must be an N x D float array, got {features.shape}")
    if paths.shape != (features.shape[0],):
        raise ValueError(f"{path}: {features.shape[0]} features but paths has shape {paths.shape}")
    return FeatureFile(
        features.astype(np.float32, copy=False), [str(p) for p in paths], str(contents[METRIC_KEY])
    )


class FeatureIndex:
    """A searchable gallery: features with their names, saved and reopened as a feature file.

    Args:
        features: N x D gallery features (as extracted; they are prepared for ``metric``).
        paths: The N gallery items' names.
        metric: "cosine" or "euclidean" (TEST.METRIC of the features).
        backend: "torch" (exact, always available) or "faiss" (a flat faiss index).
        use_gpu: Search on the GPU; None = when one is usable (faiss: faiss-gpu and a GPU;
            torch: CUDA).
        chunk_size: Queries per chunk of the torch backend.
    """

    def __init__(
        self,
        features: torch.Tensor | np.ndarray,
        paths: Sequence[str],
        metric: str = "cosine",
        backend: str = "torch",
        use_gpu: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        gallery = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if gallery.dim() != 2 or gallery.shape[0] != len(paths) or len(paths) == 0:
            raise ValueError(
                f"the gallery needs N >= 1 features (N x D) with one name each, got "
                f"{tuple(gallery.shape)} for {len(paths)} names"
            )
        if use_gpu is None:
            use_gpu = faiss_gpu_available() if backend == "faiss" else torch.cuda.is_available()
        self.features = gallery
        self.paths = list(paths)
        self.metric = metric
        self.backend = backend
        self.use_gpu = use_gpu
        self.searcher = build_searcher(gallery, metric, backend, use_gpu, chunk_size)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        """D, the feature length the index takes."""
        return int(self.features.shape[1])

    def search(self, query: torch.Tensor | np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, gallery indices) of each query's ``k`` nearest, nearest first.

        Raises:
            ValueError: The queries are not Q x D with the gallery's D, or ``k`` is not in
                [1, gallery size].
        """
        query_t = torch.as_tensor(np.asarray(query, dtype=np.float32))
        if query_t.dim() != 2 or query_t.shape[1] != self.dim:
            raise ValueError(
                f"query features must be Q x {self.dim} (the gallery's length), got "
                f"{tuple(query_t.shape)}: were they extracted with the same model?"
            )
        return self.searcher.search(query_t, k)

    def matches(
        self, query: torch.Tensor | np.ndarray, k: int, names: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Each query's ``k`` nearest gallery items as JSON-ready dicts.

        Returns:
            ``[{"query": name, "matches": [{"rank": 1, "path": ..., "distance": ...}, ...]}]``.
        """
        distances, indices = self.search(query, k)
        if len(names) != distances.shape[0]:
            raise ValueError(f"{distances.shape[0]} queries but {len(names)} query names")
        return [
            {
                "query": name,
                "matches": [
                    {"rank": r + 1, "path": self.paths[int(i)], "distance": float(d)}
                    for r, (d, i) in enumerate(zip(row_d.tolist(), row_i.tolist()))
                ],
            }
            for name, row_d, row_i in zip(names, distances, indices)
        ]

    def save(self, path: str) -> None:
        """Write the index as a feature file (``.npz``), atomically."""
        save_features(path, self.features.numpy(), self.paths, self.metric)

    @classmethod
    def load(
        cls,
        path: str,
        backend: str = "torch",
        use_gpu: bool | None = None,
        chunk_size: int | None = None,
    ) -> FeatureIndex:
        """Reopen a saved index (or any feature file) with the chosen backend."""
        data = load_features(path)
        return cls(data.features, data.paths, data.metric, backend, use_gpu, chunk_size)
