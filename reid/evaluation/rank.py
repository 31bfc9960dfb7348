"""Ranking metrics (CMC, AP, INP) with fastreid's meaning, exact and memory-bounded.

Per query the gallery is ordered by distance, ties broken by gallery index (a stable sort);
gallery items with the query's pid AND camid are dropped; the remaining items with the query's
pid are the relevant ones. A query without a relevant item is skipped.

No row is sorted. What the metrics need is the 1-based rank of every relevant item among the kept
items (CMC: the first one; AP: all; INP: the last). For relevant item m that rank is

    1 + #{kept non-relevant items before m} + #{relevant items before m},

"before" meaning (distance, gallery index) lexicographically smaller. The first count is found
with one pass over a chunk of queries: each distance is mapped to a bin by a monotone function of
the value (linear between the query's smallest and largest relevant distance), a per-query
histogram of the kept non-relevant items gives the count in all earlier bins, and only the few
items that share a bin with a relevant item are compared exactly (a small lexicographic sort).
Monotone binning makes this exact whatever the ties; the work is a handful of element-wise passes
over the chunk instead of an O(n log n) sort of every row, and memory is bounded by the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

__all__ = [
    "evaluate_rank",
    "RankAccumulator",
    "GalleryIndex",
    "rank_relevant",
    "auto_chunk_size",
    "as_distmat",
    "as_id_tensor",
    "expand_segments",
    "iter_chunks",
    "intra_op_threads",
]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[int]]

# Elements (queries x gallery) handled per chunk: about 10 bytes each of working memory.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 24}


def auto_chunk_size(num_gallery: int, device: str | torch.device = "cpu") -> int:
    """Queries per chunk so that a chunk holds about CHUNK_ELEMENTS distances for the device type."""
    budget = CHUNK_ELEMENTS.get(torch.device(device).type, CHUNK_ELEMENTS["cpu"])
    return max(1, budget // max(1, num_gallery))


def as_distmat(distmat: np.ndarray | torch.Tensor, name: str = "distmat") -> torch.Tensor:
    """A 2-D floating torch view of ``distmat`` (no copy for numpy or torch input)."""
    if isinstance(distmat, np.ndarray):
        distmat = torch.from_numpy(distmat)
    if not isinstance(distmat, torch.Tensor):
        raise TypeError(
            f"{name} must be a numpy array or a torch tensor, got {type(distmat).__name__}"
        )
    if distmat.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D (num_query x num_gallery), got shape {tuple(distmat.shape)}"
        )
    if not distmat.is_floating_point():
        raise TypeError(f"{name} must hold floating point distances, got dtype {distmat.dtype}")
    return distmat


def as_id_tensor(values: ArrayLike, name: str, length: int, device: torch.device) -> torch.Tensor:
    """Integer ids (pids or camids) as an int64 tensor on ``device``; anything else is an error."""
    if isinstance(values, torch.Tensor):
        tensor = values
        integral = (
            not tensor.is_floating_point()
            and not tensor.is_complex()
            and tensor.dtype != torch.bool
        )
        kind = str(tensor.dtype)
    else:
        array = np.asarray(values)
        integral = array.dtype.kind in "iu"
        kind = str(array.dtype)
        tensor = torch.from_numpy(array.astype(np.int64, copy=False)) if integral else None
    if not integral:
        raise TypeError(f"{name} must hold integer ids (negative ids are fine), got dtype {kind}")
    if tensor.dim() != 1 or tensor.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with {length} entries to match the distance matrix, got shape {tuple(tensor.shape)}"
        )
    return tensor.to(device=device, dtype=torch.int64)


def expand_segments(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment, offset) of every element when segment i holds counts[i] elements, in order.

    Same as ``repeat_interleave(arange(n), counts)`` and the position inside each segment;
    torch.repeat_interleave splits even tiny inputs across threads, which stalls on a busy machine.
    """
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    position = torch.arange(total, device=counts.device)
    segment = torch.searchsorted(ends, position, right=True)
    return segment, position - (ends - counts)[segment]


class GalleryIndex:
    """Gallery pids and camids with the gallery sorted by pid, to list a query's same-pid items fast."""

    def __init__(self, g_pids: torch.Tensor, g_camids: torch.Tensor) -> None:
        self.pids = g_pids
        self.camids = g_camids
        self.num = int(g_pids.shape[0])
        self.sorted_pids, self.order = torch.sort(g_pids, stable=True)

    def same_id_pairs(
        self, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row, gallery column, relevant) for every gallery item with a query's pid.

        Rows ascend and, within a row, columns ascend. ``relevant`` is False for the items with
        the query's camid too (the dropped ones).
        """
        lo = torch.searchsorted(self.sorted_pids, q_pids, side="left")
        hi = torch.searchsorted(self.sorted_pids, q_pids, side="right")
        rows, offsets = expand_segments(hi - lo)
        cols = self.order[lo[rows] + offsets]
        relevant = self.camids[cols] != q_camids[rows]
        return rows, cols, relevant

    def num_different_id(self, q_pids: torch.Tensor) -> torch.Tensor:
        """Gallery items whose pid differs from each query's pid (all of them are kept)."""
        lo = torch.searchsorted(self.sorted_pids, q_pids, side="left")
        hi = torch.searchsorted(self.sorted_pids, q_pids, side="right")
        return self.num - (hi - lo)


@dataclass
class RelevantRanks:
    """Ranks of the relevant items of a chunk of queries, in (query, distance, index) order."""

    num_rel: torch.Tensor  # (c,) relevant items per query
    rows: torch.Tensor  # (P,) query of each relevant item
    pos: torch.Tensor  # (P,) 0-based position among the query's relevant items
    rank: torch.Tensor  # (P,) 1-based rank among the query's kept items


def _bins_per_query(num_gallery: int) -> int:
    # About two gallery items per bin over the span of the relevant distances: a relevant item
    # then shares its bin with few others, while the histogram stays smaller than the chunk.
    return int(min(max(2, num_gallery // 2), 1 << 23))


_BLOCK = 64


def _count_in_earlier_bins(
    hist: torch.Tensor, flat_bins: torch.Tensor, stride: int
) -> torch.Tensor:
    """For each flat bin ``f`` (row * stride + b): the items of its row in bins < b.

    Block sums of 64 bins plus a masked window inside the block: much cheaper than a cumulative
    sum over every bin when only a few bins per row are asked for.
    """
    rows_blocks = hist.view(-1, stride // _BLOCK, _BLOCK).sum(2, dtype=torch.int32).long()
    blocks_before = (torch.cumsum(rows_blocks, 1) - rows_blocks).view(-1)
    block = torch.div(flat_bins, _BLOCK, rounding_mode="floor")
    offset = flat_bins - block * _BLOCK
    lane = torch.arange(_BLOCK, device=hist.device)
    window = hist[block[:, None] * _BLOCK + lane]
    return blocks_before[block] + (window * (lane < offset[:, None])).sum(1)


class Workspace:
    """Buffers reused from chunk to chunk: fresh large allocations cost page faults every time."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, name: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (name, dtype, device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:numel]


@torch.no_grad()
def rank_relevant(
    dist: torch.Tensor,
    q_pids: torch.Tensor,
    q_camids: torch.Tensor,
    gallery: GalleryIndex,
    workspace: Workspace | None = None,
) -> RelevantRanks:
    """Exact ranks of the relevant items for a chunk of queries (``dist`` is c x n_g)."""
    ws = workspace if workspace is not None else Workspace()
    c, n_g = dist.shape
    device = dist.device
    rows, cols, relevant = gallery.same_id_pairs(q_pids, q_camids)
    rel_rows, rel_cols = rows[relevant], cols[relevant]
    num_rel = torch.bincount(rel_rows, minlength=c)
    work = torch.float64 if dist.dtype == torch.float64 else torch.float32
    big = torch.finfo(work).max
    t = dist[rel_rows, rel_cols].to(work)

    # Linear bins between the smallest and largest relevant distance of each query (bins 1 to
    # B): bin 0 holds the items below, bin B + 1 the items far above, the row's last bin (never
    # counted) the relevant and the dropped items. Separate subtract / multiply / add passes
    # (no fused multiply-add) keep the map a monotone function of the value, identical for
    # every element of a row, which is all that exactness needs.
    num_bins = _bins_per_query(n_g)
    stride = -(-(num_bins + 3) // _BLOCK) * _BLOCK
    t_min = torch.zeros(c, dtype=work, device=device).scatter_reduce_(
        0, rel_rows, t, "amin", include_self=False
    )
    t_max = torch.zeros(c, dtype=work, device=device).scatter_reduce_(
        0, rel_rows, t, "amax", include_self=False
    )
    t_min = t_min.clamp(-big, big)
    span = t_max.clamp(-big, big).double() - t_min.double()
    # A single relevant distance (span 0): a huge scale leaves only exact ties in its bin. The
    # scale stays positive and finite, so no 0 * inf can appear.
    scale = torch.where(span > 0, (num_bins - 1) / span, torch.full_like(span, 1e30))
    scale = scale.clamp(min=torch.finfo(work).tiny, max=1e30).to(work)
    x = ws.get("values", c * n_g, work, device).view(c, n_g)
    torch.sub(dist, t_min[:, None], out=x)
    x.mul_(scale[:, None]).add_(1.0).clamp_(0.0, num_bins + 1)
    if not bool(torch.isfinite(x.sum())):
        raise ValueError(
            "distmat contains NaN; distances must be numbers (infinite values are allowed)"
        )
    index_dtype = torch.int32 if c * stride < 2**31 else torch.int64
    idx = ws.get("bins", c * n_g, index_dtype, device).view(c, n_g)
    idx.copy_(x)
    row_base = torch.arange(c, device=device, dtype=index_dtype) * stride
    idx.add_(row_base[:, None])
    rel_bins = idx[rel_rows, rel_cols].long()
    idx[rows, cols] = (row_base + (stride - 1))[rows]
    flat_idx = idx.view(-1)

    hist = ws.get("hist", c * stride, torch.int32, device).zero_()
    hist.index_add_(
        0, flat_idx, torch.ones(1, dtype=torch.int32, device=device).expand(flat_idx.shape[0])
    )
    mark = ws.get("mark", c * stride, torch.bool, device).zero_()
    mark[rel_bins] = True
    in_marked = ws.get("in_marked", c * n_g, torch.bool, device)
    torch.index_select(mark, 0, flat_idx, out=in_marked)
    shared = in_marked.nonzero().squeeze(1)
    shared_bins = flat_idx[shared].long()

    # Exact order inside the shared bins: sort the relevant items and their bin-mates by
    # (bin, distance, gallery index) and count the non-relevant ones ahead of each relevant one.
    s_rows, s_cols = shared // n_g, shared % n_g
    bins = torch.cat([shared_bins, rel_bins])
    values = torch.cat([dist[s_rows, s_cols].to(work), t]) + 0.0  # + 0.0 turns -0.0 into 0.0
    cand_cols = torch.cat([s_cols, rel_cols])
    is_rel = torch.cat(
        [torch.zeros_like(s_cols, dtype=torch.bool), torch.ones_like(rel_cols, dtype=torch.bool)]
    )
    order = torch.argsort(cand_cols, stable=True)
    order = order[torch.argsort(values[order], stable=True)]
    order = order[torch.argsort(bins[order], stable=True)]
    bins, is_rel = bins[order], is_rel[order]
    others = (~is_rel).long()
    others_before = torch.cumsum(others, 0) - others
    _, group_sizes = torch.unique_consecutive(bins, return_counts=True)
    _, offset = expand_segments(group_sizes)
    inside = (others_before - others_before[torch.arange(bins.shape[0], device=device) - offset])[
        is_rel
    ]
    r_bins = bins[is_rel]
    r_rows = torch.div(r_bins, stride, rounding_mode="floor")
    pos = (
        torch.arange(r_bins.shape[0], device=device) - (torch.cumsum(num_rel, 0) - num_rel)[r_rows]
    )
    rank = 1 + _count_in_earlier_bins(hist, r_bins, stride) + inside + pos
    return RelevantRanks(num_rel=num_rel, rows=r_rows, pos=pos, rank=rank)


@dataclass
class QueryScores:
    """Per-query results of a chunk; entries of queries without a relevant item are 0."""

    num_rel: torch.Tensor
    first_rank: torch.Tensor
    ap: torch.Tensor
    ap_official: torch.Tensor
    inp: torch.Tensor


def score_queries(ranks: RelevantRanks) -> QueryScores:
    """AP (non-interpolated and Market-1501 official), INP and first-hit rank per query."""
    c = ranks.num_rel.shape[0]
    device = ranks.rank.device
    rank = ranks.rank.double()
    hits = (ranks.pos + 1).double()
    precision = hits / rank
    # Official Market-1501 AP: trapezoids between the precision at the previous kept position
    # (1 before the first position) and at the hit.
    previous = torch.where(
        ranks.rank > 1, ranks.pos.double() / (rank - 1).clamp(min=1), torch.ones_like(rank)
    )
    num_rel = ranks.num_rel
    denom = num_rel.clamp(min=1).double()
    ap = (
        torch.zeros(c, dtype=torch.float64, device=device).index_add_(0, ranks.rows, precision)
        / denom
    )
    ap_official = (
        torch.zeros(c, dtype=torch.float64, device=device).index_add_(
            0, ranks.rows, (previous + precision) / 2
        )
        / denom
    )
    first = ranks.pos == 0
    last = ranks.pos == num_rel[ranks.rows] - 1
    first_rank = torch.zeros(c, dtype=torch.int64, device=device)
    first_rank[ranks.rows[first]] = ranks.rank[first]
    last_rank = torch.ones(c, dtype=torch.int64, device=device)
    last_rank[ranks.rows[last]] = ranks.rank[last]
    inp = num_rel.double() / last_rank.double()
    return QueryScores(
        num_rel=num_rel, first_rank=first_rank, ap=ap, ap_official=ap_official, inp=inp
    )


class RankAccumulator:
    """Collects per-query scores chunk by chunk; ``compute`` gives fastreid's (cmc, all_AP, all_INP).

    Chunks may come from a stored distance matrix or be computed on the fly (the evaluator does
    so, so that the full query x gallery matrix never needs to exist).
    """

    def __init__(self, g_pids: torch.Tensor, g_camids: torch.Tensor) -> None:
        self.gallery = GalleryIndex(g_pids, g_camids)
        self._workspace = Workspace()
        self._scores: list[QueryScores] = []

    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """Scores of the queries of ``dist`` (c x num_gallery), which follow those added before."""
        scores = score_queries(rank_relevant(dist, q_pids, q_camids, self.gallery, self._workspace))
        self._scores.append(
            QueryScores(
                *(
                    v.cpu()
                    for v in (
                        scores.num_rel,
                        scores.first_rank,
                        scores.ap,
                        scores.ap_official,
                        scores.inp,
                    )
                )
            )
        )

    def _cat(self, name: str) -> torch.Tensor:
        return (
            torch.cat([getattr(s, name) for s in self._scores]) if self._scores else torch.zeros(0)
        )

    @property
    def valid(self) -> torch.Tensor:
        return self._cat("num_rel") > 0

    def compute(
        self, max_rank: int = 50, official_ap: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid = self.valid
        num_valid = int(valid.sum())
        if num_valid == 0:
            num_q = int(valid.shape[0])
            raise ValueError(
                f"none of the {num_q} queries has a relevant gallery item (same pid, other camera): "
                "all queries are skipped, so no ranking metric can be computed"
            )
        max_rank = min(max_rank, self.gallery.num)
        first = self._cat("first_rank")[valid]
        hits = torch.bincount(first.clamp(max=max_rank + 1), minlength=max_rank + 2)[
            1 : max_rank + 1
        ]
        cmc = (torch.cumsum(hits, 0).double() / num_valid).numpy()
        all_ap = self._cat("ap_official" if official_ap else "ap")[valid].numpy()
        all_inp = self._cat("inp")[valid].numpy()
        return cmc, all_ap, all_inp


def iter_chunks(num: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, num, chunk_size):
        yield start, min(num, start + chunk_size)


@contextmanager
def intra_op_threads(num_threads: int | None, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run the block with ``num_threads`` torch CPU threads, then restore the setting.

    The metric is a chain of short memory-bound passes: when the cores are shared with other
    work, every multi-threaded pass waits for its slowest thread (measured here on a busy
    2-core machine: 5.6 s with 2 threads against 0.43 s with 1 at Market scale). No-op for
    ``None`` / 0 or a non-CPU device.
    """
    if not num_threads or torch.device(device).type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluate_rank(
    distmat: np.ndarray | torch.Tensor,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    *,
    official_ap: bool = False,
    cuhk03_repeats: int = 10,
    cuhk03_seed: int = 0,
    chunk_size: int | None = None,
    num_threads: int | None = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CMC, AP and INP of a query x gallery distance matrix (smaller = closer), fastreid's meaning.

    Returns ``(cmc, all_AP, all_INP)``: ``cmc[k]`` is the share of valid queries with a relevant
    item at rank <= k + 1 (length ``min(max_rank, num_gallery)``); ``all_AP`` and ``all_INP`` hold
    one value per valid query (queries without a relevant item are skipped; mAP = mean).

    - ``distmat``: numpy array or torch tensor on any device; computed there, chunk by chunk.
    - ``official_ap``: the Market-1501 devkit's AP (trapezoid rule between the precision at the
      previous kept position and at each hit) instead of the non-interpolated AP
      ``(1/G) sum_k r_k * hits_at_k / k`` of torchreid / fastreid.
    - ``use_metric_cuhk03``: the classic CUHK03 single-gallery-shot CMC (``cuhk03_repeats`` seeded
      draws of one gallery image per identity, see ``rank_cuhk03``); AP and INP stay the ones of
      the full gallery.
    - ``chunk_size``: queries per chunk (default: about 4M distances per chunk on CPU, 16M on CUDA).
    - ``num_threads``: torch CPU threads while computing (restored after; see ``intra_op_threads``);
      ``None`` keeps torch's setting.
    """
    dist = as_distmat(distmat)
    num_q, num_g = dist.shape
    device = dist.device
    q_pids_t = as_id_tensor(q_pids, "q_pids", num_q, device)
    g_pids_t = as_id_tensor(g_pids, "g_pids", num_g, device)
    q_camids_t = as_id_tensor(q_camids, "q_camids", num_q, device)
    g_camids_t = as_id_tensor(g_camids, "g_camids", num_g, device)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if num_g == 0:
        raise ValueError("the gallery is empty: distmat has 0 columns")
    step = chunk_size if chunk_size else auto_chunk_size(num_g, device)
    if step < 1:
        raise ValueError(f"chunk_size must be a positive number of queries, got {chunk_size}")
    accumulator = RankAccumulator(g_pids_t, g_camids_t)
    classic = None
    if use_metric_cuhk03:
        from .rank_cuhk03 import SingleGalleryShotCMC

        classic = SingleGalleryShotCMC(
            g_pids_t, g_camids_t, num_q, repeats=cuhk03_repeats, seed=cuhk03_seed
        )
    with intra_op_threads(num_threads, device):
        for start, end in iter_chunks(num_q, step):
            chunk = dist[start:end]
            accumulator.add(chunk, q_pids_t[start:end], q_camids_t[start:end])
            if classic is not None:
                classic.add(start, chunk, q_pids_t[start:end], q_camids_t[start:end])
    cmc, all_ap, all_inp = accumulator.compute(max_rank, official_ap=official_ap)
    if classic is not None:
        cmc = classic.compute(max_rank)
    return cmc, all_ap, all_inp
