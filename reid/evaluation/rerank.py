"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-bounded, on CPU or GPU.

The steps, in the paper's terms and with the conventions of its reference code:

1. Original distance d(p, g): the base distance squared, each row divided by its maximum over
   all query + gallery items. N(p, k) = the k + 1 nearest items of p (p itself included).
2. k-reciprocal neighbours R(p, k1) = {g in N(p, k1) : p in N(g, k1)}.
3. Expansion R*(p) = R(p, k1) joined with R(q, round(k1 / 2)) for every q in R(p, k1) with
   |R(p, k1) & R(q, round(k1 / 2))| > 2/3 |R(q, round(k1 / 2))|.
4. V(p, g) = exp(-d(p, g)) for g in R*(p), 0 elsewhere, normalised to sum 1 per row.
5. Local query expansion (k2 > 1): V(p) <- mean of V(g) over the k2 nearest items g of p.
6. Jaccard distance d_J(p, g) = 1 - sum min(V(p), V(g)) / sum max(V(p), V(g)); rows of V sum
   to 1, so sum max = 2 - sum min.
7. Final distance d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g), for queries p and
   gallery items g.

Memory: the (k1 + 1)-NN lists, the sparse V (|R*(p)| entries per row, k2 times more after
step 5) and one chunk of distance rows at a time; the N x N matrix is never held. The work is
dominated by computing the N x N base distances once, on the device of the inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reid.config.schema import ConfigBlock, InvalidArgument, Key, declare

from .distance import Distance
from .gallery import expand_segments
from .rank import as_distmat, auto_chunk_size, chunk_budget, iter_chunks
from .search import topk_smallest

__all__ = [
    "RERANK_CONFIG",
    "DistanceSource",
    "FeatureDistances",
    "MatrixDistances",
    "check_rerank",
    "re_ranking",
    "rerank_chunks",
]


RERANK_CONFIG = declare(
    ConfigBlock(
        "TEST.RERANK",
        "k-reciprocal re-ranking of the test distances (Zhong et al., CVPR 2017).",
        {
            "ENABLED": Key(False, "Re-rank the query-gallery distances."),
            "K1": Key(20, "k of the k-reciprocal neighbours (round(K1 / 2) for the expansion)."),
            "K2": Key(6, "Neighbours of the local query expansion of the encodings (1 = none)."),
            "LAMBDA": Key(
                0.3, "Final distance = (1 - LAMBDA) * Jaccard distance + LAMBDA * original one."
            ),
        },
    )
)


class DistanceSource(ABC):
    """Base distances among the query + gallery items (queries first), served by rows or pairs."""

    num_query: int
    num: int
    device: torch.device

    @abstractmethod
    def rows(self, start: int, end: int) -> torch.Tensor:
        """Distances of items start..end-1 to all items, (end - start) x num."""

    @abstractmethod
    def pairs(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Distances of the pairs (i[n], j[n])."""


class MatrixDistances(DistanceSource):
    """Distances from the three blocks fastreid's ``re_ranking`` takes.

    Args:
        q_g_dist: Query x gallery distances.
        q_q_dist: Query x query distances.
        g_g_dist: Gallery x gallery distances.
    """

    def __init__(
        self,
        q_g_dist: np.ndarray | torch.Tensor,
        q_q_dist: np.ndarray | torch.Tensor,
        g_g_dist: np.ndarray | torch.Tensor,
    ) -> None:
        self.q_g = as_distmat(q_g_dist, "q_g_dist")
        self.device = self.q_g.device
        self.num_query, num_gallery = self.q_g.shape
        self.q_q = as_distmat(q_q_dist, "q_q_dist").to(self.device)
        self.g_g = as_distmat(g_g_dist, "g_g_dist").to(self.device)
        for name, block, size in (
            ("q_q_dist", self.q_q, self.num_query),
            ("g_g_dist", self.g_g, num_gallery),
        ):
            if tuple(block.shape) != (size, size):
                raise ValueError(
                    f"{name} must be {size} x {size} to match q_g_dist, got {tuple(block.shape)}"
                )
        self.num = self.num_query + num_gallery

    def rows(self, start: int, end: int) -> torch.Tensor:
        n_q = self.num_query
        parts = []
        if start < n_q:
            e = min(end, n_q)
            parts.append(torch.cat([self.q_q[start:e], self.q_g[start:e]], 1))
        if end > n_q:
            s = max(start, n_q) - n_q
            parts.append(torch.cat([self.q_g[:, s : end - n_q].t(), self.g_g[s : end - n_q]], 1))
        return torch.cat(parts).float()

    def pairs(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        n_q = self.num_query
        out = torch.empty(i.shape[0], dtype=torch.float32, device=self.device)
        iq, jq = i < n_q, j < n_q
        for mask, block, di, dj in (
            (iq & jq, self.q_q, 0, 0),
            (iq & ~jq, self.q_g, 0, n_q),
            (~iq & jq, self.q_g.t(), n_q, 0),
            (~iq & ~jq, self.g_g, n_q, n_q),
        ):
            out[mask] = block[i[mask] - di, j[mask] - dj].float()
        return out


class FeatureDistances(DistanceSource):
    """Distances computed on demand from features.

    Args:
        query_feat: Query features, already passed through ``distance.prepare``.
        gallery_feat: Gallery features, likewise.
        distance: The distance.
    """

    def __init__(
        self, query_feat: torch.Tensor, gallery_feat: torch.Tensor, distance: Distance
    ) -> None:
        self.features = torch.cat([query_feat, gallery_feat]).float()
        self.distance = distance
        self.device = self.features.device
        self.num_query = query_feat.shape[0]
        self.num = self.features.shape[0]

    def rows(self, start: int, end: int) -> torch.Tensor:
        return self.distance.pairwise(self.features[start:end], self.features)

    def pairs(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        step = auto_chunk_size(self.features.shape[1], self.device)
        out = [
            self.distance.paired(self.features[i[s:e]], self.features[j[s:e]])
            for s, e in iter_chunks(i.shape[0], step)
        ]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)


def _normalised(dist: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """Step 1: squared base distance over the row's maximum squared distance."""
    return dist.float().pow(2) / row_max


def _nearest(source: DistanceSource, width: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` nearest items of every item (by distance, then index) and each row's
    largest squared distance."""
    knn = torch.empty(source.num, width, dtype=torch.int64, device=source.device)
    row_max = torch.empty(source.num, dtype=torch.float32, device=source.device)
    for start, end in iter_chunks(source.num, step):
        squared = source.rows(start, end).float().pow(2)
        row_max[start:end] = squared.amax(1).clamp(min=torch.finfo(torch.float32).tiny)
        knn[start:end] = topk_smallest(squared / row_max[start:end, None], width)[1]
    return knn, row_max


def _reciprocal(knn: torch.Tensor, k: int, step: int) -> torch.Tensor:
    """Mask over knn[:, :k]: True where the neighbour has the item among its own k nearest."""
    forward = knn[:, :k]
    mask = torch.empty_like(forward, dtype=torch.bool)
    for start, end in iter_chunks(knn.shape[0], step):
        backward = knn[forward[start:end], :k]
        me = torch.arange(start, end, device=knn.device)[:, None, None]
        mask[start:end] = (backward == me).any(-1)
    return mask


def _expansion(
    knn: torch.Tensor, k: int, half: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of R*(p) for every p, sorted by row then column (steps 2 and 3)."""
    recip = _reciprocal(knn, k, step)
    recip_half = _reciprocal(knn, half, step)
    half_sets = torch.where(recip_half, knn[:, :half], -1)
    half_sizes = recip_half.sum(1)
    rows_out, cols_out = [], []
    for start, end in iter_chunks(knn.shape[0], max(1, step // (half * k))):
        own = torch.where(recip[start:end], knn[start:end, :k], -2)
        cand = knn[start:end, :k]
        cand_sets = half_sets[cand]
        overlap = (cand_sets[..., None] == own[:, None, None, :]).any(-1).sum(-1)
        accept = recip[start:end] & (3 * overlap > 2 * half_sizes[cand])
        added = torch.where(accept[..., None], cand_sets, -1).flatten(1)
        members = torch.sort(torch.cat([own, added], 1), dim=1).values
        first = torch.ones_like(members, dtype=torch.bool)
        first[:, 1:] = members[:, 1:] != members[:, :-1]
        r, pos = (first & (members >= 0)).nonzero(as_tuple=True)
        rows_out.append(r + start)
        cols_out.append(members[r, pos])
    return torch.cat(rows_out), torch.cat(cols_out)


def _crow(rows: torch.Tensor, num: int) -> torch.Tensor:
    counts = torch.bincount(rows, minlength=num)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def _local_query_expansion(
    knn: torch.Tensor,
    k2: int,
    crow: torch.Tensor,
    cols: torch.Tensor,
    vals: torch.Tensor,
    step: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 5 on the sparse V: row p becomes the mean of the rows of its k2 nearest items."""
    num = knn.shape[0]
    device = knn.device
    rows_out, cols_out, vals_out = [], [], []
    for start, end in iter_chunks(num, step):
        neighbours = knn[start:end, :k2].reshape(-1)
        segment, offset = expand_segments(crow[neighbours + 1] - crow[neighbours])
        owner = start + torch.div(segment, k2, rounding_mode="floor")
        position = crow[neighbours][segment] + offset
        key = owner * num + cols[position]
        key, order = torch.sort(key)
        unique_key, inverse = torch.unique_consecutive(key, return_inverse=True)
        summed = torch.zeros(unique_key.shape[0], dtype=vals.dtype, device=device).index_add_(
            0, inverse, vals[position][order]
        )
        rows_out.append(torch.div(unique_key, num, rounding_mode="floor"))
        cols_out.append(unique_key % num)
        vals_out.append(summed / k2)
    return torch.cat(rows_out), torch.cat(cols_out), torch.cat(vals_out)


def check_rerank(k1: int, k2: int, lambda_value: float, num_items: int | None = None) -> None:
    """The rules of the re-ranking settings (see :func:`rerank_chunks`).

    Args:
        k1, k2, lambda_value: As :func:`rerank_chunks` takes them.
        num_items: The number of query + gallery items, once known: k1 must be smaller, k2 at
            most that.
    """
    for name, k in (("k1", k1), ("k2", k2)):
        if k < 1:
            raise InvalidArgument(name, f"must be >= 1, got {k}")
    if not 0.0 <= lambda_value <= 1.0:
        raise InvalidArgument("lambda_value", f"must lie in [0, 1], got {lambda_value}")
    if num_items is not None and k1 >= num_items:
        raise InvalidArgument(
            "k1",
            f"must be smaller than the number of query + gallery items ({num_items}), got {k1}",
        )
    if num_items is not None and k2 > num_items:
        raise InvalidArgument(
            "k2", f"must be at most the number of query + gallery items ({num_items}), got {k2}"
        )


def rerank_chunks(
    source: DistanceSource,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The re-ranked query x gallery distances, a chunk of queries at a time.

    Args:
        source: The base distances among the query + gallery items.
        k1: k of the k-reciprocal neighbours.
        k2: Neighbours of the local query expansion (1 = none).
        lambda_value: Weight of the original distance in the final one.
        chunk_size: Queries per chunk (default: from the budget of ``CHUNK_ELEMENTS``).

    Yields:
        ``(start, end, distances)``: the re-ranked distances of queries start..end-1 to the
        whole gallery, in query order.
    """
    check_rerank(k1, k2, lambda_value, source.num)
    step = chunk_size or auto_chunk_size(source.num, source.device)
    encodings, row_max = _encodings(source, k1, k2, step)
    by_column = _GalleryColumns(encodings, source.num, source.num_query)
    # About ten 8-byte arrays per entry pair: a quarter of the budget keeps them near a chunk.
    budget = chunk_budget(source.device) // 4
    for start, end in _budgeted_ranges(by_column.pairs_per_query, step, budget):
        base = source.rows(start, end)[:, source.num_query :]
        original = _normalised(base, row_max[start:end, None])
        jaccard = by_column.jaccard(start, end)
        yield start, end, jaccard * (1.0 - lambda_value) + original * lambda_value


@dataclass
class _Sparse:
    """An N x N matrix by its non-zero entries (rows[n], cols[n], vals[n]), sorted by row."""

    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor


def _encodings(source: DistanceSource, k1: int, k2: int, step: int) -> tuple[_Sparse, torch.Tensor]:
    """Steps 1 to 5: the encodings V and each item's largest squared base distance."""
    num, device = source.num, source.device
    knn, row_max = _nearest(source, max(k1 + 1, k2), step)
    half = int(round(k1 / 2)) + 1
    rows, cols = _expansion(knn, k1 + 1, half, auto_chunk_size((k1 + 1) ** 2, device))
    weights = torch.exp(-_normalised(source.pairs(rows, cols), row_max[rows]))
    row_sums = torch.zeros(num, dtype=weights.dtype, device=device).index_add_(0, rows, weights)
    vals = weights / row_sums[rows]
    if k2 > 1:
        per_row = k2 * max(1, rows.shape[0] // num)
        rows, cols, vals = _local_query_expansion(
            knn, k2, _crow(rows, num), cols, vals, auto_chunk_size(4 * per_row, device)
        )
    return _Sparse(rows, cols, vals), row_max


class _GalleryColumns:
    """V's gallery rows by column, to meet each query's entries column by column (step 6).

    Args:
        v: The encodings of the ``num`` query + gallery items (queries first).
        num: The number of query + gallery items.
        num_query: The number of queries.
    """

    def __init__(self, v: _Sparse, num: int, num_query: int) -> None:
        self.v = v
        self.num_query = num_query
        self.num_gallery = num - num_query
        self.crow = _crow(v.rows, num)
        in_gallery = v.rows >= num_query
        g_cols, order = torch.sort(v.cols[in_gallery], stable=True)
        self.g_rows = (v.rows[in_gallery] - num_query)[order]
        self.g_vals = v.vals[in_gallery][order]
        self.colptr = _crow(g_cols, num)
        # Per entry of V: the gallery entries in its column, each a term of the Jaccard sums.
        self.entry_pairs = self.colptr[v.cols + 1] - self.colptr[v.cols]
        in_query = v.rows < num_query
        self.pairs_per_query = torch.zeros(
            num_query, dtype=torch.int64, device=v.rows.device
        ).index_add_(0, v.rows[in_query], self.entry_pairs[in_query])

    def jaccard(self, start: int, end: int) -> torch.Tensor:
        """Jaccard distances of queries start..end-1 to the gallery, (end - start) x num_gallery."""
        v, n_g = self.v, self.num_gallery
        lo, hi = int(self.crow[start]), int(self.crow[end])
        q_rows, q_cols, q_vals = v.rows[lo:hi] - start, v.cols[lo:hi], v.vals[lo:hi]
        segment, offset = expand_segments(self.entry_pairs[lo:hi])
        position = self.colptr[q_cols][segment] + offset
        shared_min = torch.minimum(q_vals[segment], self.g_vals[position])
        flat = q_rows[segment] * n_g + self.g_rows[position]
        overlap = torch.zeros((end - start) * n_g, dtype=torch.float32, device=v.rows.device)
        overlap = overlap.index_add_(0, flat, shared_min).view(end - start, n_g)
        return 1.0 - overlap / (2.0 - overlap)


def _budgeted_ranges(
    pairs_per_query: torch.Tensor, max_rows: int, budget: int
) -> Iterator[tuple[int, int]]:
    """Consecutive query ranges of at most ``max_rows`` queries and about ``budget`` entry pairs."""
    cumulative = torch.cumsum(pairs_per_query, 0).cpu()
    num = cumulative.shape[0]
    start = 0
    while start < num:
        base = int(cumulative[start - 1]) if start > 0 else 0
        end = int(torch.searchsorted(cumulative, base + budget, side="right"))
        end = min(max(end, start + 1), start + max_rows, num)
        yield start, end
        start = end


def re_ranking(
    q_g_dist: np.ndarray | torch.Tensor,
    q_q_dist: np.ndarray | torch.Tensor,
    g_g_dist: np.ndarray | torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> np.ndarray | torch.Tensor:
    """The re-ranked query x gallery distances as one matrix, fastreid's ``re_ranking``.

    Args:
        q_g_dist, q_q_dist, g_g_dist: Query x gallery, query x query and gallery x gallery
            distances (numpy arrays or torch tensors).
        k1, k2, lambda_value, chunk_size: As :func:`rerank_chunks` takes them.

    Returns:
        The re-ranked q x g distances: numpy for numpy input, else a tensor.

    Queries and gallery items as points on a line (query 0 near gallery items 0 and 1, query 1
    near gallery item 2); the pairs that are not mutual neighbours move towards 1:

    >>> points_q, points_g = np.array([0.0, 10.0]), np.array([1.0, 2.0, 11.0])
    >>> dist = lambda a, b: np.abs(a[:, None] - b[None, :]).astype(np.float32)
    >>> reranked = re_ranking(
    ...     dist(points_q, points_g), dist(points_q, points_q), dist(points_g, points_g),
    ...     k1=2, k2=1, lambda_value=0.3)
    >>> print(reranked.round(3))
    [[0.01  0.029 1.   ]
     [0.943 0.892 0.009]]
    """
    source = MatrixDistances(q_g_dist, q_q_dist, g_g_dist)
    parts = [chunk for _, _, chunk in rerank_chunks(source, k1, k2, lambda_value, chunk_size)]
    result = torch.cat(parts)
    return result.cpu().numpy() if isinstance(q_g_dist, np.ndarray) else result
