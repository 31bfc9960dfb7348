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

:func:`score_chunks` is the one scoring loop: it feeds chunks of query rows (a stored matrix cut
into slices, or distances computed on the fly by the evaluator) to the rank accumulator and any
other accumulator (the CUHK03 classic CMC, the ROC), with the metric's thread setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch

from reid.config.schema import InvalidArgument

from .gallery import GalleryIndex, expand_segments
from .rank_cuhk03 import SingleGalleryShotCMC

__all__ = [
    "CHUNK_ELEMENTS",
    "ChunkConsumer",
    "GalleryIndex",
    "RankAccumulator",
    "as_distmat",
    "as_id_tensor",
    "auto_chunk_size",
    "chunk_budget",
    "evaluate_rank",
    "expand_segments",
    "intra_op_threads",
    "iter_chunks",
    "rank_relevant",
    "score_chunks",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence[int]
Chunks = Iterable[tuple[int, int, torch.Tensor]]

# Elements (queries x gallery) handled per chunk: about 10 bytes each of working memory.
CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 24}


def chunk_budget(device: str | torch.device = "cpu") -> int:
    """Elements per chunk on ``device``'s type (``CHUNK_ELEMENTS``; the CPU's for other types)."""
    return CHUNK_ELEMENTS.get(torch.device(device).type, CHUNK_ELEMENTS["cpu"])


def auto_chunk_size(row_size: int, device: str | torch.device = "cpu") -> int:
    """Rows per chunk so that a chunk of rows of ``row_size`` elements fills the budget.

    >>> auto_chunk_size(1000), auto_chunk_size(10**8)
    (4194, 1)
    """
    return max(1, chunk_budget(device) // max(1, row_size))


def iter_chunks(num: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive chunks of ``chunk_size`` out of ``num`` items.

    >>> list(iter_chunks(5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
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
        integral = not (values.is_floating_point() or values.is_complex())
        integral = integral and values.dtype != torch.bool
        kind = str(values.dtype)
    else:
        array = np.asarray(values)
        integral = array.dtype.kind in "iu"
        kind = str(array.dtype)
    if not integral:
        raise TypeError(f"{name} must hold integer ids (negative ids are fine), got dtype {kind}")
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        tensor = torch.from_numpy(array.astype(np.int64, copy=False))
    if tensor.dim() != 1 or tensor.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with {length} entries to match the distance matrix, "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor.to(device=device, dtype=torch.int64)


@dataclass
class RelevantRanks:
    """Ranks of the relevant items of a chunk of queries, in (query, distance, index) order."""

    num_rel: torch.Tensor  # (c,) relevant items per query
    rows: torch.Tensor  # (P,) query of each relevant item
    pos: torch.Tensor  # (P,) 0-based position among the query's relevant items
    rank: torch.Tensor  # (P,) 1-based rank among the query's kept items


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
    """Exact ranks of the relevant items for a chunk of queries (``dist`` is c x n_g).

    The phases: find the same-pid items; put every distance in a per-query bin (a monotone map);
    count the kept non-relevant items per bin; order exactly the few items that share a bin
    with a relevant item. A relevant item's rank is then 1 + the non-relevant items in earlier
    bins + those ahead of it in its own bin + the relevant items before it.
    """
    ws = workspace if workspace is not None else Workspace()
    c, n_g = dist.shape
    work = torch.float64 if dist.dtype == torch.float64 else torch.float32
    items = _same_id_items(dist, q_pids, q_camids, gallery, work)
    num_bins = _bins_per_query(n_g)
    # Bins 0 (below), 1..num_bins, num_bins + 1 (far above) and the row's last bin, in blocks.
    stride = -(-(num_bins + 3) // _BLOCK) * _BLOCK
    flat_bins, rel_bins = _flat_bins(dist, items, num_bins, stride, work, ws)
    hist = _histogram(flat_bins, c * stride, ws)
    shared = _items_in_relevant_bins(flat_bins, rel_bins, c * stride, ws)
    r_bins, ahead_in_bin = _order_within_bins(dist, shared, flat_bins, rel_bins, items, work)
    r_rows = torch.div(r_bins, stride, rounding_mode="floor")
    first_of_row = torch.cumsum(items.num_rel, 0) - items.num_rel
    pos = torch.arange(r_bins.shape[0], device=dist.device) - first_of_row[r_rows]
    rank = 1 + _count_in_earlier_bins(hist, r_bins, stride) + ahead_in_bin + pos
    return RelevantRanks(num_rel=items.num_rel, rows=r_rows, pos=pos, rank=rank)


@dataclass
class _SameIdItems:
    """The gallery items that share the pid of a chunk's queries."""

    rows: torch.Tensor  # query row of every same-pid item, relevant or dropped
    cols: torch.Tensor  # its gallery column
    rel_rows: torch.Tensor  # the relevant ones (another camera)
    rel_cols: torch.Tensor
    num_rel: torch.Tensor  # (c,) relevant items per query
    values: torch.Tensor  # the relevant items' distances, in the working dtype


def _same_id_items(
    dist: torch.Tensor,
    q_pids: torch.Tensor,
    q_camids: torch.Tensor,
    gallery: GalleryIndex,
    work: torch.dtype,
) -> _SameIdItems:
    rows, cols, relevant = gallery.same_id_pairs(q_pids, q_camids)
    rel_rows, rel_cols = rows[relevant], cols[relevant]
    return _SameIdItems(
        rows=rows,
        cols=cols,
        rel_rows=rel_rows,
        rel_cols=rel_cols,
        num_rel=torch.bincount(rel_rows, minlength=dist.shape[0]),
        values=dist[rel_rows, rel_cols].to(work),
    )


def _bins_per_query(num_gallery: int) -> int:
    # About two gallery items per bin over the span of the relevant distances: a relevant item
    # then shares its bin with few others, while the histogram stays smaller than the chunk.
    return int(min(max(2, num_gallery // 2), 1 << 23))


_BLOCK = 64


def _bin_map(
    items: _SameIdItems, num_queries: int, num_bins: int, work: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query, (offset, scale) of the map ``1 + (d - offset) * scale``: the smallest relevant
    distance goes to bin 1, the largest to bin ``num_bins``."""
    big = torch.finfo(work).max
    t_min = torch.zeros(num_queries, dtype=work, device=device).scatter_reduce_(
        0, items.rel_rows, items.values, "amin", include_self=False
    )
    t_max = torch.zeros(num_queries, dtype=work, device=device).scatter_reduce_(
        0, items.rel_rows, items.values, "amax", include_self=False
    )
    t_min = t_min.clamp(-big, big)
    span = t_max.clamp(-big, big).double() - t_min.double()
    # A single relevant distance (span 0): a huge scale leaves only exact ties in its bin. The
    # scale stays positive and finite, so no 0 * inf can appear.
    scale = torch.where(span > 0, (num_bins - 1) / span, torch.full_like(span, 1e30))
    return t_min, scale.clamp(min=torch.finfo(work).tiny, max=1e30).to(work)


def _flat_bins(
    dist: torch.Tensor,
    items: _SameIdItems,
    num_bins: int,
    stride: int,
    work: torch.dtype,
    ws: Workspace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item's bin as a flat index ``row * stride + bin``, and the relevant items' bins.

    Bin 0 holds the items below the smallest relevant distance, bin ``num_bins + 1`` those far
    above the largest; the relevant and the dropped items go to the row's last bin (never
    counted). Separate subtract / multiply / add passes (no fused multiply-add) keep the map a
    monotone function of the value, identical for every element of a row, which is all that
    exactness needs.
    """
    c, n_g = dist.shape
    device = dist.device
    offset, scale = _bin_map(items, c, num_bins, work, device)
    x = ws.get("values", c * n_g, work, device).view(c, n_g)
    torch.sub(dist, offset[:, None], out=x)
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
    rel_bins = idx[items.rel_rows, items.rel_cols].long()
    idx[items.rows, items.cols] = (row_base + (stride - 1))[items.rows]
    return idx.view(-1), rel_bins


def _histogram(flat_bins: torch.Tensor, size: int, ws: Workspace) -> torch.Tensor:
    """Items per flat bin."""
    device = flat_bins.device
    hist = ws.get("hist", size, torch.int32, device).zero_()
    ones = torch.ones(1, dtype=torch.int32, device=device).expand(flat_bins.shape[0])
    return hist.index_add_(0, flat_bins, ones)


def _items_in_relevant_bins(
    flat_bins: torch.Tensor, rel_bins: torch.Tensor, size: int, ws: Workspace
) -> torch.Tensor:
    """Flat element indices of the items whose bin holds a relevant item (c x n_g order)."""
    device = flat_bins.device
    mark = ws.get("mark", size, torch.bool, device).zero_()
    mark[rel_bins] = True
    in_marked = ws.get("in_marked", flat_bins.shape[0], torch.bool, device)
    torch.index_select(mark, 0, flat_bins, out=in_marked)
    return in_marked.nonzero().squeeze(1)


def _order_within_bins(
    dist: torch.Tensor,
    shared: torch.Tensor,
    flat_bins: torch.Tensor,
    rel_bins: torch.Tensor,
    items: _SameIdItems,
    work: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(bin, non-relevant items ahead of it in its bin) of every relevant item, sorted by
    (bin, distance, gallery index) together with its bin-mates ``shared``."""
    n_g = dist.shape[1]
    s_rows, s_cols = shared // n_g, shared % n_g
    bins = torch.cat([flat_bins[shared].long(), rel_bins])
    values = torch.cat([dist[s_rows, s_cols].to(work), items.values]) + 0.0  # -0.0 becomes 0.0
    cols = torch.cat([s_cols, items.rel_cols])
    is_rel = torch.cat(
        [
            torch.zeros_like(s_cols, dtype=torch.bool),
            torch.ones_like(items.rel_cols, dtype=torch.bool),
        ]
    )
    order = torch.argsort(cols, stable=True)
    order = order[torch.argsort(values[order], stable=True)]
    order = order[torch.argsort(bins[order], stable=True)]
    bins, is_rel = bins[order], is_rel[order]
    others = (~is_rel).long()
    others_before = torch.cumsum(others, 0) - others
    _, group_sizes = torch.unique_consecutive(bins, return_counts=True)
    _, offset = expand_segments(group_sizes)
    group_start = torch.arange(bins.shape[0], device=dist.device) - offset
    return bins[is_rel], (others_before - others_before[group_start])[is_rel]


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


@dataclass
class QueryScores:
    """Per-query results of a chunk; entries of queries without a relevant item are 0."""

    num_rel: torch.Tensor
    first_rank: torch.Tensor
    ap: torch.Tensor
    ap_official: torch.Tensor
    inp: torch.Tensor

    def cpu(self) -> QueryScores:
        return QueryScores(**{f.name: getattr(self, f.name).cpu() for f in fields(self)})


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


class ChunkConsumer(Protocol):
    """An accumulator :func:`score_chunks` feeds: one call per chunk, queries in order."""

    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None: ...


class RankAccumulator:
    """Collects per-query scores chunk by chunk; ``compute`` gives fastreid's (cmc, AP, INP).

    Chunks may come from a stored distance matrix or be computed on the fly (the evaluator does
    so, so that the full query x gallery matrix never needs to exist).

    Args:
        g_pids: The gallery's pids (int64, on the device of the distances).
        g_camids: The gallery's camera ids.
    """

    def __init__(self, g_pids: torch.Tensor, g_camids: torch.Tensor) -> None:
        self.gallery = GalleryIndex(g_pids, g_camids)
        self._workspace = Workspace()
        self._scores: list[QueryScores] = []

    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """Scores of the queries of ``dist`` (c x num_gallery), which follow those added before."""
        ranks = rank_relevant(dist, q_pids, q_camids, self.gallery, self._workspace)
        self._scores.append(score_queries(ranks).cpu())

    def _cat(self, name: str) -> torch.Tensor:
        return (
            torch.cat([getattr(s, name) for s in self._scores]) if self._scores else torch.zeros(0)
        )

    @property
    def valid(self) -> torch.Tensor:
        """Per query added: whether it has a relevant item (the others are skipped)."""
        return self._cat("num_rel") > 0

    def compute(
        self, max_rank: int = 50, official_ap: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cmc, all_AP, all_INP) of the valid queries; see :func:`evaluate_rank`.

        Raises:
            ValueError: No query has a relevant item.
        """
        valid = self.valid
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"none of the {int(valid.shape[0])} queries has a relevant gallery item (same "
                "pid, other camera): all queries are skipped, so no ranking metric can be computed"
            )
        max_rank = min(max_rank, self.gallery.num)
        first = self._cat("first_rank")[valid]
        hits = torch.bincount(first.clamp(max=max_rank + 1), minlength=max_rank + 2)
        cmc = (torch.cumsum(hits[1 : max_rank + 1], 0).double() / num_valid).numpy()
        all_ap = self._cat("ap_official" if official_ap else "ap")[valid].numpy()
        all_inp = self._cat("inp")[valid].numpy()
        return cmc, all_ap, all_inp


def score_chunks(
    chunks: Chunks,
    q_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_pids: torch.Tensor,
    g_camids: torch.Tensor,
    *,
    max_rank: int = 50,
    official_ap: bool = False,
    use_metric_cuhk03: bool = False,
    cuhk03_repeats: int = 10,
    cuhk03_seed: int = 0,
    num_threads: int | None = 1,
    also: Sequence[ChunkConsumer] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranking metrics of query chunks, each ``(start, end, distances to the gallery)``.

    Args:
        chunks: Consecutive chunks covering the queries in order; a chunk's distances are
            ``(end - start) x num_gallery``, on the device of the ids.
        q_pids, q_camids, g_pids, g_camids: int64 ids of all queries and of the gallery.
        max_rank, official_ap, use_metric_cuhk03, cuhk03_repeats, cuhk03_seed, num_threads: As
            in :func:`evaluate_rank`.
        also: More accumulators fed the same chunks (e.g. a :class:`~.roc.RocAccumulator`).

    Returns:
        ``(cmc, all_AP, all_INP)`` as :func:`evaluate_rank` returns them.
    """
    ranking = RankAccumulator(g_pids, g_camids)
    consumers: list[ChunkConsumer] = [ranking, *also]
    classic = None
    if use_metric_cuhk03:
        classic = SingleGalleryShotCMC(
            g_pids, g_camids, q_pids.shape[0], repeats=cuhk03_repeats, seed=cuhk03_seed
        )
        consumers.append(classic)
    for start, end, dist in chunks:
        with intra_op_threads(num_threads, dist.device):
            for consumer in consumers:
                consumer.add(dist, q_pids[start:end], q_camids[start:end])
    cmc, all_ap, all_inp = ranking.compute(max_rank, official_ap=official_ap)
    if classic is not None:
        cmc = classic.compute(max_rank)
    return cmc, all_ap, all_inp


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

    Args:
        distmat: numpy array or torch tensor on any device; computed there, chunk by chunk.
        q_pids, g_pids, q_camids, g_camids: Integer ids of the queries and the gallery items.
        max_rank: Length of the CMC (at most the gallery size).
        use_metric_cuhk03: The classic CUHK03 single-gallery-shot CMC (``cuhk03_repeats``
            seeded draws of one gallery image per identity, see ``rank_cuhk03``); AP and INP
            stay the ones of the full gallery.
        official_ap: The Market-1501 devkit's AP (trapezoid rule between the precision at the
            previous kept position and at each hit) instead of the non-interpolated AP
            ``(1/G) sum_k r_k * hits_at_k / k`` of torchreid / fastreid.
        cuhk03_repeats, cuhk03_seed: The classic CMC's draws.
        chunk_size: Queries per chunk (default: about 4M distances per chunk on CPU, 16M on
            CUDA).
        num_threads: torch CPU threads while computing (restored after; see
            ``intra_op_threads``); ``None`` keeps torch's setting.

    Returns:
        ``(cmc, all_AP, all_INP)``: ``cmc[k]`` is the share of valid queries with a relevant
        item at rank <= k + 1 (length ``min(max_rank, num_gallery)``); ``all_AP`` and
        ``all_INP`` hold one value per valid query (queries without a relevant item are
        skipped; mAP = their mean).

    Query 0's relevant items (pid 1, camera 1) come 1st and 3rd; query 1's only relevant item
    comes 2nd, after a miss (gallery item 3 has its pid and camera, so it is dropped):

    >>> distmat = np.array([[0.1, 0.4, 0.3, 0.2], [0.5, 0.2, 0.1, 0.3]])
    >>> cmc, all_ap, all_inp = evaluate_rank(
    ...     distmat, q_pids=[1, 2], g_pids=[1, 2, 1, 2], q_camids=[0, 0], g_camids=[1, 1, 1, 0],
    ...     max_rank=3)
    >>> cmc.tolist(), all_ap.round(4).tolist(), all_inp.round(4).tolist()
    ([0.5, 1.0, 1.0], [0.8333, 0.5], [0.6667, 0.5])
    """
    dist = as_distmat(distmat)
    num_q, num_g = dist.shape
    device = dist.device
    q_pids_t = as_id_tensor(q_pids, "q_pids", num_q, device)
    g_pids_t = as_id_tensor(g_pids, "g_pids", num_g, device)
    q_camids_t = as_id_tensor(q_camids, "q_camids", num_q, device)
    g_camids_t = as_id_tensor(g_camids, "g_camids", num_g, device)
    if max_rank < 1:
        raise InvalidArgument("max_rank", f"must be >= 1, got {max_rank}")
    if num_g == 0:
        raise ValueError("the gallery is empty: distmat has 0 columns")
    step = chunk_size if chunk_size else auto_chunk_size(num_g, device)
    if step < 1:
        raise InvalidArgument(
            "chunk_size", f"must be a positive number of queries, got {chunk_size}"
        )
    chunks = ((start, end, dist[start:end]) for start, end in iter_chunks(num_q, step))
    return score_chunks(
        chunks,
        q_pids_t,
        q_camids_t,
        g_pids_t,
        g_camids_t,
        max_rank=max_rank,
        official_ap=official_ap,
        use_metric_cuhk03=use_metric_cuhk03,
        cuhk03_repeats=cuhk03_repeats,
        cuhk03_seed=cuhk03_seed,
        num_threads=num_threads,
    )
