"""What the rank lists and figures show, computed in the metric's own pass over the distances.

:func:`analyze_ranking` feeds the chunks of query x gallery distances that the evaluator scores
(``reid.evaluation.evaluator.distance_chunks``: query expansion, TEST.METRIC, re-ranking as
configured) to ``reid.evaluation.rank.score_chunks``, the metric's scoring loop, together with
two more accumulators: the ROC (``RocAccumulator`` at a grid of false positive rates) and a
:class:`RankListCollector`. So the CMC is the metric's, the AP that orders the queries is the
metric's, and the rank lists follow the metric's rules:

- gallery items with the query's pid AND camid are dropped (``GalleryIndex.same_id_pairs``, the
  rule the metric uses); they get no rank and are not listed, their number is kept per query;
- the others are ordered by distance, ties by gallery index (the metric's stable order); a
  listed item's rank is its rank among the kept items, as in the CMC;
- queries without a relevant item (same pid, another camera) are skipped by the metric, and
  have no AP to order by.

Junk images (pid -1 in Market-style sets) never reach the evaluation: the dataset readers drop
them. Distractors (pid 0) are ordinary gallery items of another identity.

Positive pairs are a query and a relevant item, negative pairs a query and an item of another
pid (the ROC's pairs). Their distances go to :class:`DistanceHistogram` (exact counts, bounded
memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reid.config.schema import InvalidArgument
from reid.evaluation.evaluator import (
    RANKS,
    EvalSettings,
    distance_chunks,
    metric_percentages,
)
from reid.evaluation.gallery import GalleryIndex, expand_segments
from reid.evaluation.rank import score_chunks
from reid.evaluation.roc import RocAccumulator, roc_key
from reid.evaluation.search import topk_smallest

__all__ = [
    "NEGATIVE_BUDGET",
    "ORDERS",
    "DistanceHistogram",
    "RankListCollector",
    "RankLists",
    "RankingAnalysis",
    "analyze_ranking",
    "first_kept",
    "roc_curve_fprs",
]

# How the queries of the rank lists are chosen: by AP, worst or best first, or a seeded shuffle.
ORDERS = ("worst", "best", "random")

# The ROC curve keeps this many smallest negative distances at most (8-byte values): the curve
# reaches FPR = min(1, NEGATIVE_BUDGET / #negative pairs).
NEGATIVE_BUDGET = 1 << 20

ROC_POINTS_PER_DECADE = 10


def roc_curve_fprs(
    num_negatives: int,
    configured: Sequence[float] = (),
    budget: int = NEGATIVE_BUDGET,
    per_decade: int = ROC_POINTS_PER_DECADE,
) -> tuple[float, ...]:
    """The false positive rates where the ROC curve is evaluated, ascending.

    Log-spaced from 1 / ``num_negatives`` (the smallest FPR above 0 that the pairs can show) to
    min(1, ``budget`` / ``num_negatives``), ``per_decade`` points per decade, plus the
    ``configured`` ones (TEST.ROC.FPRS), which are kept whatever the budget.

    >>> roc_curve_fprs(100, per_decade=1)
    (0.01, 0.1, 1.0)
    >>> roc_curve_fprs(0, configured=[1e-3])
    (0.001, 1.0)
    """
    grid: set[float] = {float(f) for f in configured}
    if num_negatives == 0:
        return tuple(sorted(grid | {1.0}))
    hi = min(1.0, budget / num_negatives)
    lo = min(hi, 1.0 / num_negatives)
    decades = math.log10(hi / lo)
    points = max(2, round(decades * per_decade) + 1)
    grid.update(float(f) for f in np.logspace(math.log10(lo), math.log10(hi), points))
    return tuple(sorted(grid))


def _power_of_two_at_least(value: float) -> float:
    return 2.0 ** math.ceil(math.log2(value))


def _as_float(values: torch.Tensor) -> torch.Tensor:
    """Flat float32 or float64 values (half precision and integers widened)."""
    values = values.detach().flatten()
    if values.dtype in (torch.float32, torch.float64):
        return values
    return values.double() if not values.is_floating_point() else values.float()


class DistanceHistogram:
    """Exact counts of values in the bins ``[i * width, (i + 1) * width)``, ``i >= first``.

    ``width`` is a power of two chosen from the first values; whenever the values would need
    more than ``max_bins`` bins it doubles and pairs of bins merge. A bin of width 2w is exactly
    the union of two bins of width w (``floor(v / 2w) = floor(floor(v / w) / 2)``, exact for
    powers of two), so counts are never split: every count is the exact number of values in its
    bin, whatever the order in which the values came. Infinite values are counted apart.

    Args:
        max_bins: The most bins kept.

    >>> h = DistanceHistogram(max_bins=4)
    >>> h.add(torch.tensor([0.1, 0.2, 0.3]))
    >>> h.width, h.edges().tolist(), h.counts.tolist()
    (0.125, [0.0, 0.125, 0.25, 0.375], [1, 1, 1])
    >>> h.add(torch.tensor([0.9]))
    >>> h.width, h.edges().tolist(), h.counts.tolist()
    (0.25, [0.0, 0.25, 0.5, 0.75, 1.0], [2, 1, 0, 1])
    """

    def __init__(self, max_bins: int = 1024) -> None:
        if max_bins < 2:
            raise InvalidArgument("max_bins", f"must be >= 2, got {max_bins}")
        self.max_bins = max_bins
        self.width = 0.0  # 0: no finite value yet
        self.first = 0
        self.counts = torch.zeros(0, dtype=torch.int64)
        self.num_infinite = 0

    @property
    def total(self) -> int:
        """The number of finite values counted."""
        return int(self.counts.sum())

    def edges(self) -> np.ndarray:
        """The ``len(counts) + 1`` bin edges."""
        return (self.first + np.arange(self.counts.shape[0] + 1)) * self.width

    def add(self, values: torch.Tensor, minus: torch.Tensor | None = None) -> None:
        """Count ``values`` (any shape, any device) but those of ``minus``.

        Args:
            values: The values to count; NaN is an error.
            minus: Values taken from ``values`` (the very same numbers) not to count: with them
                a block of distances is counted less a few pairs, without a masked copy.
        """
        values = _as_float(values)
        removed = _as_float(minus) if minus is not None else values[:0]
        if not bool(torch.isfinite(values).all()):
            if bool(torch.isnan(values).any()):
                raise ValueError("distances contain NaN; distances must be numbers")
            self.num_infinite += int(torch.isinf(values).sum()) - int(torch.isinf(removed).sum())
            values, removed = values[torch.isfinite(values)], removed[torch.isfinite(removed)]
        if values.numel() == 0:
            return
        lo_t, hi_t = torch.aminmax(values)
        lo, hi = float(lo_t), float(hi_t)
        if self.width == 0.0:
            span = hi - lo if hi > lo else max(abs(lo), 1.0) * 2.0**-20
            self.width = _power_of_two_at_least(span / (self.max_bins - 1))
        first, last = self._span(lo, hi)
        while last - first + 1 > self.max_bins:
            self._merge_pairs()
            first, last = self._span(lo, hi)
        size = last - first + 1
        counts = torch.zeros(size, dtype=torch.int64)
        left = self.first - first
        if self.counts.numel():
            counts[left : left + self.counts.shape[0]] = self.counts
        counts += self._bincount(values, first, size)
        if removed.numel():
            counts -= self._bincount(removed, first, size)
        if bool((counts < 0).any()):
            raise ValueError("minus must hold values taken from values")
        nonzero = counts.nonzero()
        if nonzero.numel() == 0:
            self.counts, self.first = counts[:0], first
        else:
            a, b = int(nonzero[0]), int(nonzero[-1])
            self.counts, self.first = counts[a : b + 1], first + a

    def _span(self, lo: float, hi: float) -> tuple[int, int]:
        """The first and last bin covering the counts so far and [lo, hi]."""
        first, last = math.floor(lo / self.width), math.floor(hi / self.width)
        if self.counts.numel():
            first = min(first, self.first)
            last = max(last, self.first + self.counts.shape[0] - 1)
        return first, last

    def _bincount(self, values: torch.Tensor, first: int, size: int) -> torch.Tensor:
        # Division by a power of two is exact, so is floor: the bin is exact in any float dtype.
        index = torch.floor(values / self.width).long()
        index -= first
        return torch.bincount(index, minlength=size).cpu()

    def _merge_pairs(self) -> None:
        index = torch.arange(self.counts.shape[0]) + self.first
        merged = torch.div(index, 2, rounding_mode="floor")
        first = math.floor(self.first / 2)
        size = int(merged[-1]) - first + 1 if merged.numel() else 0
        self.counts = torch.zeros(size, dtype=torch.int64).index_add_(
            0, merged - first, self.counts
        )
        self.first = first
        self.width *= 2

    def coarsened(self, width: float) -> DistanceHistogram:
        """A copy with bins of ``width`` (this width times a power of two, not smaller)."""
        if not self.counts.numel():
            raise ValueError("an empty histogram has no bins to coarsen")
        steps = math.log2(width / self.width)
        if steps < 0 or steps != round(steps):
            raise ValueError(
                f"width {width} is not this histogram's width {self.width} times a power of two"
            )
        copy = DistanceHistogram(max(self.max_bins, 2))
        copy.width, copy.first, copy.counts = self.width, self.first, self.counts.clone()
        copy.num_infinite = self.num_infinite
        for _ in range(round(steps)):
            copy._merge_pairs()
        return copy


def common_bins(
    histograms: Sequence[DistanceHistogram], max_bins: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(edges, counts of each histogram) on shared bins, at most ``max_bins`` of them.

    The shared width is the widest histogram's, doubled until the bins spanning all values fit
    in ``max_bins``; empty histograms get zero counts.
    """
    filled = [h for h in histograms if h.counts.numel()]
    if not filled:
        return np.zeros(0), [np.zeros(0, dtype=np.int64) for _ in histograms]
    width = max(h.width for h in filled)
    while True:
        coarse = [h.coarsened(width) for h in filled]
        first = min(h.first for h in coarse)
        last = max(h.first + h.counts.shape[0] - 1 for h in coarse)
        if last - first + 1 <= max_bins:
            break
        width *= 2
    size = last - first + 1
    by_id = {id(h): c for h, c in zip(filled, coarse)}
    counts = []
    for h in histograms:
        row = np.zeros(size, dtype=np.int64)
        c = by_id.get(id(h))
        if c is not None:
            row[c.first - first : c.first - first + c.counts.shape[0]] = c.counts.numpy()
        counts.append(row)
    return (first + np.arange(size + 1)) * width, counts


def first_kept(
    dist: torch.Tensor, dropped_rows: torch.Tensor, dropped_cols: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's first ``k`` kept items in the metric's order: by distance, then column.

    Args:
        dist: c x n distances.
        dropped_rows, dropped_cols: The entries that are not ranked (same pid and camera).
        k: How many items per row.

    Returns:
        ``(columns, distances)``, c x k each (int64, float64); a row with fewer than ``k`` kept
        items is padded with -1 and NaN.

    torch.topk (``search.topk_smallest``) gives the k-th smallest distance; every kept item up to
    it (ties included) is then ordered exactly, so ties at the cut keep the smallest columns.

    >>> dist = torch.tensor([[0.5, 0.1, 0.5, 0.5, 0.2]])
    >>> columns, distances = first_kept(dist, torch.tensor([0]), torch.tensor([1]), k=3)
    >>> columns.tolist(), distances.tolist()
    ([[4, 0, 2]], [[0.20000000298023224, 0.5, 0.5]])
    """
    c, n = dist.shape
    key = dist.clone()
    key[dropped_rows, dropped_cols] = math.inf
    kth = topk_smallest(key, min(k, n))[0][:, -1:]
    candidate = key <= kth
    candidate[dropped_rows, dropped_cols] = False
    rows, cols = candidate.nonzero(as_tuple=True)  # row-major: columns ascend within a row
    values = key[rows, cols]
    order = torch.sort(values, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    rows, cols, values = rows[order], cols[order], values[order]
    _, position = expand_segments(torch.bincount(rows, minlength=c))
    keep = position < k
    columns = torch.full((c, k), -1, dtype=torch.int64, device=dist.device)
    distances = torch.full((c, k), math.nan, dtype=torch.float64, device=dist.device)
    columns[rows[keep], position[keep]] = cols[keep]
    distances[rows[keep], position[keep]] = values[keep].double()
    return columns.cpu(), distances.cpu()


@dataclass
class RankLists:
    """Every query's first ``k`` kept gallery items (see :func:`first_kept`).

    Attributes:
        columns: n_q x k gallery indices, -1 past the last kept item.
        distances: n_q x k distances, NaN past the last kept item.
        matches: n_q x k, True where the item has the query's pid.
        num_relevant: Per query, the relevant items (same pid, another camera).
        num_dropped: Per query, the gallery items with its pid and camera (not ranked).
    """

    columns: torch.Tensor
    distances: torch.Tensor
    matches: torch.Tensor
    num_relevant: torch.Tensor
    num_dropped: torch.Tensor


class RankListCollector:
    """A chunk consumer (``score_chunks(also=...)``) keeping each query's first ``top_k`` kept
    items and the distances of the positive and negative pairs.

    Args:
        gallery: The gallery's ids.
        top_k: Items per rank list.
        histogram_bins: The most bins of each distance histogram.
    """

    def __init__(self, gallery: GalleryIndex, top_k: int, histogram_bins: int = 1024) -> None:
        if top_k < 1:
            raise InvalidArgument("top_k", f"must be >= 1, got {top_k}")
        self.gallery = gallery
        self.top_k = top_k
        self.positives = DistanceHistogram(histogram_bins)
        self.negatives = DistanceHistogram(histogram_bins)
        self._parts: list[tuple[torch.Tensor, ...]] = []

    @torch.no_grad()
    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """The queries of ``dist`` (c x num_gallery), following those added before."""
        c = dist.shape[0]
        rows, cols, relevant = self.gallery.same_id_pairs(q_pids, q_camids)
        dropped = ~relevant
        columns, distances = first_kept(dist, rows[dropped], cols[dropped], self.top_k)
        g_pids = self.gallery.pids.cpu()
        matches = (columns >= 0) & (g_pids[columns.clamp(min=0)] == q_pids.cpu()[:, None])
        self.positives.add(dist[rows[relevant], cols[relevant]])
        self.negatives.add(dist, minus=dist[rows, cols])  # every pair but the same-pid ones
        self._parts.append(
            (
                columns,
                distances,
                matches,
                torch.bincount(rows[relevant], minlength=c).cpu(),
                torch.bincount(rows[dropped], minlength=c).cpu(),
            )
        )

    def rank_lists(self) -> RankLists:
        """The rank lists of every query added."""
        if not self._parts:
            raise ValueError("no query was added")
        return RankLists(*(torch.cat(part) for part in zip(*self._parts)))


@dataclass
class RankingAnalysis:
    """The metric's results with what the figures and the rank lists show.

    Attributes:
        results: The metrics as ``score_features`` reports them (percent).
        cmc: The metric's CMC, ranks 1 .. len (fractions).
        ap: Per query, the metric's AP (NaN for the queries the metric skips).
        inp: Per query, the INP (NaN for the skipped queries).
        valid: Per query, whether it has a relevant item (else the metric skips it).
        rank_lists: Every query's first ``top_k`` kept items.
        positives: The distances of the positive pairs.
        negatives: The distances of the negative pairs.
        roc_fprs: False positive rates of the ROC curve (ascending).
        roc_tprs: ``RocAccumulator``'s TPR at each of them.
        roc_reported: The FPRs among them that the results report (TEST.ROC.FPRS when on).
        num_negatives: The number of negative pairs.
    """

    results: dict[str, float]
    cmc: np.ndarray
    ap: np.ndarray
    inp: np.ndarray
    valid: np.ndarray
    rank_lists: RankLists
    positives: DistanceHistogram
    negatives: DistanceHistogram
    roc_fprs: tuple[float, ...]
    roc_tprs: list[float]
    roc_reported: tuple[float, ...]
    num_negatives: int

    def query_order(self, order: str, count: int | None = None, seed: int = 0) -> np.ndarray:
        """Indices of the queries to show: the metric's valid queries, ``count`` at most.

        Args:
            order: "worst" (lowest AP first), "best" (highest first) or "random" (a shuffle
                seeded with ``seed``); ties in AP keep the query order.
            count: How many (None: all valid queries).
            seed: The shuffle's seed.
        """
        valid = np.flatnonzero(self.valid)
        if order == "worst":
            chosen = valid[np.argsort(self.ap[valid], kind="stable")]
        elif order == "best":
            chosen = valid[np.argsort(-self.ap[valid], kind="stable")]
        elif order == "random":
            chosen = np.random.default_rng(seed).permutation(valid)
        else:
            raise InvalidArgument("order", f"must be one of {', '.join(ORDERS)}, got {order!r}")
        return chosen if count is None else chosen[:count]


def analyze_ranking(
    features: torch.Tensor,
    pids: torch.Tensor,
    camids: torch.Tensor,
    num_query: int,
    settings: EvalSettings | None = None,
    top_k: int = 10,
    max_rank: int = 50,
    histogram_bins: int = 1024,
) -> RankingAnalysis:
    """The metric, rank lists, pair distances and ROC curve of query then gallery features.

    Args:
        features: One feature per image, the ``num_query`` queries first.
        pids: The images' identities (int64, on the features' device).
        camids: The images' camera ids.
        num_query: How many of the images are queries.
        settings: How the evaluator scores them (default: :class:`EvalSettings` defaults).
        top_k: Gallery items per rank list.
        max_rank: Length of the CMC (at most the gallery size).
        histogram_bins: The most bins of each distance histogram.

    Returns:
        The analysis; its ``results`` equal ``score_features``' for the same arguments.
    """
    settings = settings if settings is not None else EvalSettings()
    if max_rank < 1:
        raise InvalidArgument("max_rank", f"must be >= 1, got {max_rank}")
    qf, gf = features[:num_query], features[num_query:]
    q_pids, g_pids = pids[:num_query], pids[num_query:]
    q_camids, g_camids = camids[:num_query], camids[num_query:]
    gallery = GalleryIndex(g_pids, g_camids)
    num_negatives = int(gallery.num_different_id(q_pids).sum())
    configured = tuple(float(f) for f in settings.roc_fprs) if settings.roc else ()
    fprs = roc_curve_fprs(num_negatives, configured)
    roc = RocAccumulator(gallery, q_pids, fprs)
    collector = RankListCollector(gallery, top_k, histogram_bins)
    with settings.naming_errors():
        cmc, all_ap, all_inp = score_chunks(
            distance_chunks(qf, gf, settings),
            q_pids,
            q_camids,
            g_pids,
            g_camids,
            max_rank=max(max_rank, max(RANKS)),
            official_ap=settings.official_ap,
            use_metric_cuhk03=settings.single_gallery_shot,
            cuhk03_repeats=settings.cuhk03_repeats,
            cuhk03_seed=settings.cuhk03_seed,
            num_threads=settings.metric_threads,
            also=[roc, collector],
        )
    results = metric_percentages(cmc, all_ap, all_inp)
    tprs = roc.tprs()
    for f in configured:
        results[roc_key(f)] = tprs[fprs.index(f)] * 100
    rank_lists = collector.rank_lists()
    valid = (rank_lists.num_relevant > 0).numpy()
    ap = np.full(num_query, np.nan)
    inp = np.full(num_query, np.nan)
    ap[valid], inp[valid] = all_ap, all_inp
    return RankingAnalysis(
        results=results,
        cmc=cmc[: min(max_rank, cmc.shape[0])],
        ap=ap,
        inp=inp,
        valid=valid,
        rank_lists=rank_lists,
        positives=collector.positives,
        negatives=collector.negatives,
        roc_fprs=fprs,
        roc_tprs=tprs,
        roc_reported=configured,
        num_negatives=num_negatives,
    )
