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

import numpy as np
import torch

from reid.config.schema import ConfigBlock, Key, declare

from .distance import Distance
from .rank import CHUNK_ELEMENTS, as_distmat, expand_segments, iter_chunks
from .search import topk_smallest

__all__ = ["DistanceSource", "MatrixDistances", "FeatureDistances", "rerank_chunks", "re_ranking"]


RERANK_CONFIG = declare(
    ConfigBlock(
        "TEST.RERANK",
        "k-reciprocal re-ranking (Zhong et al., CVPR 2017).",
        {
            "ENABLED": Key(
                False,
                "k-reciprocal re-ranking.",
            ),
            "K1": Key(
                20,
                "k of the k-reciprocal neighbours (k/2 for the expansion step).",
            ),
            "K2": Key(
                6,
                "Neighbours of the local query expansion of the encodings (1 = none).",
            ),
            "LAMBDA": Key(
                0.3,
                ("Final distance = (1 - LAMBDA) * Jaccard distance + LAMBDA * original distance."),
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
    """From the three blocks of fastreid's ``re_ranking``: query-gallery, query-query, gallery-gallery."""

    def __init__(self, q_g_dist, q_q_dist, g_g_dist) -> None:
        self.q_g = as_distmat(q_g_dist, "q_g_dist")
        self.device = self.q_g.device
        self.num_query, num_gallery = self.q_g.shape
        self.q_q = as_distmat(q_q_dist, "q_q_dist").to(self.device)
        self.g_g = as_distmat(g_g_dist, "g_g_dist").to(self.device)
        if tuple(self.q_q.shape) != (self.num_query, self.num_query):
            raise ValueError(
                f"q_q_dist must be {self.num_query} x {self.num_query} to match q_g_dist, got {tuple(self.q_q.shape)}"
            )
        if tuple(self.g_g.shape) != (num_gallery, num_gallery):
            raise ValueError(
                f"g_g_dist must be {num_gallery} x {num_gallery} to match q_g_dist, got {tuple(self.g_g.shape)}"
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
    """Distances computed on demand from features already passed through ``distance.prepare``."""

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
        budget = CHUNK_ELEMENTS.get(self.device.type, CHUNK_ELEMENTS["cpu"])
        step = max(1, budget // self.features.shape[1])
        out = [
            self.distance.paired(self.features[i[s:e]], self.features[j[s:e]])
            for s, e in iter_chunks(i.shape[0], step)
        ]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)


def _normalised(dist: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """Step 1: squared base distance over the row's maximum squared distance."""
    return dist.float().pow(2) / row_max


def _nearest(source: DistanceSource, width: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` nearest items of every item (ordered by distance, then index) and each
    row's max squared distance."""
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


def rerank_chunks(
    source: DistanceSource,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (start, end, re-ranked distances of queries start..end-1 to the whole gallery)."""
    if k1 < 1 or k2 < 1:
        raise ValueError(f"TEST.RERANK.K1 and K2 must be >= 1, got K1={k1}, K2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"TEST.RERANK.LAMBDA must lie in [0, 1], got {lambda_value}")
    num, n_q = source.num, source.num_query
    n_g = num - n_q
    width = max(k1 + 1, k2)
    if width > num:
        raise ValueError(
            f"re-ranking with K1={k1}, K2={k2} needs at least {width} query + gallery items, got {num}"
        )
    device = source.device
    budget = CHUNK_ELEMENTS.get(device.type, CHUNK_ELEMENTS["cpu"])
    step = chunk_size or max(1, budget // num)
    knn, row_max = _nearest(source, width, step)
    half = int(round(k1 / 2)) + 1
    rows, cols = _expansion(knn, k1 + 1, half, max(1, budget // (k1 + 1) ** 2))
    weights = torch.exp(-_normalised(source.pairs(rows, cols), row_max[rows]))
    row_sums = torch.zeros(num, dtype=weights.dtype, device=device).index_add_(0, rows, weights)
    vals = weights / row_sums[rows]
    if k2 > 1:
        per_row = k2 * max(1, rows.shape[0] // num)
        rows, cols, vals = _local_query_expansion(
            knn, k2, _crow(rows, num), cols, vals, max(1, budget // (4 * per_row))
        )
    del knn
    crow = _crow(rows, num)

    # Column-major view of the gallery rows of V, to meet each query's entries column by column.
    in_gallery = rows >= n_q
    g_cols, order = torch.sort(cols[in_gallery], stable=True)
    g_rows = (rows[in_gallery] - n_q)[order]
    g_vals = vals[in_gallery][order]
    colptr = _crow(g_cols, num)
    entry_pairs = colptr[cols + 1] - colptr[cols]
    pairs_per_query = torch.zeros(n_q, dtype=torch.int64, device=device).index_add_(
        0, rows[rows < n_q], entry_pairs[rows < n_q]
    )
    # About ten 8-byte arrays per entry pair: a quarter of the budget keeps them near the chunk size.
    for start, end in _budgeted_ranges(pairs_per_query, step, budget // 4):
        lo, hi = int(crow[start]), int(crow[end])
        q_rows, q_cols, q_vals = rows[lo:hi] - start, cols[lo:hi], vals[lo:hi]
        segment, offset = expand_segments(entry_pairs[lo:hi])
        position = colptr[q_cols][segment] + offset
        shared_min = torch.minimum(q_vals[segment], g_vals[position])
        flat = q_rows[segment] * n_g + g_rows[position]
        overlap = torch.zeros((end - start) * n_g, dtype=torch.float32, device=device).index_add_(
            0, flat, shared_min
        )
        overlap = overlap.view(end - start, n_g)
        jaccard = 1.0 - overlap / (2.0 - overlap)
        original = _normalised(source.rows(start, end)[:, n_q:], row_max[start:end, None])
        yield start, end, jaccard * (1.0 - lambda_value) + original * lambda_value


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
    """The re-ranked query x gallery distances, as one matrix (numpy in, numpy out)."""
    source = MatrixDistances(q_g_dist, q_q_dist, g_g_dist)
    parts = [chunk for _, _, chunk in rerank_chunks(source, k1, k2, lambda_value, chunk_size)]
    result = torch.cat(parts)
    return result.cpu().numpy() if isinstance(q_g_dist, np.ndarray) else result
