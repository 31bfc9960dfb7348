"""TPR at fixed FPR over query-gallery pairs, streamed over chunks of queries.

Pairs are the kept (query, gallery) pairs of every query (the gallery items with the query's pid
and camid are dropped, as for the ranking): positive = same pid, negative = other pid. A pair is
accepted when its distance is at most a threshold. For a target FPR f the threshold is the
largest one that accepts at most floor(f * #negatives) negatives, so that
TPR(f) = #{positives with distance < n_(k+1)} / #positives, n_(k+1) being the (k+1)-th smallest
negative distance, k = floor(f * #negatives); TPR is 1 when k reaches #negatives.

Only the k_max + 1 smallest negative distances are kept (k_max for the largest target FPR): each
chunk contributes the values below the current (k_max + 1)-th smallest, so memory stays bounded
by that count plus a chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reid.config.schema import ConfigBlock, InvalidArgument, Key, declare

from .gallery import GalleryIndex

__all__ = ["ROC_CONFIG", "RocAccumulator", "check_fprs", "roc_key"]


ROC_CONFIG = declare(
    ConfigBlock(
        "TEST.ROC",
        "TPR at fixed FPR over the query-gallery pairs (reid/evaluation/roc.py).",
        {
            "ENABLED": Key(False, 'Also report the TPR at each of FPRS ("TPR@FPR=1e-04", ...).'),
            "FPRS": Key([1e-4, 1e-3, 1e-2], "Target false positive rates, each in (0, 1]."),
        },
    )
)


DEFAULT_FPRS = (1e-4, 1e-3, 1e-2)


def check_fprs(fprs: Sequence[float]) -> tuple[float, ...]:
    """The target false positive rates, checked: at least one, each in (0, 1]."""
    if len(fprs) == 0:
        raise InvalidArgument("fprs", "must name at least one false positive rate")
    for f in fprs:
        if not 0.0 < f <= 1.0:
            raise InvalidArgument(
                "fprs", f"must lie in (0, 1] (each a false positive rate), got {f}"
            )
    return tuple(float(f) for f in fprs)


def roc_key(fpr: float) -> str:
    """Result key of a target FPR, fastreid's spelling.

    >>> roc_key(1e-4)
    'TPR@FPR=1e-04'
    """
    return f"TPR@FPR={fpr:.0e}"


class RocAccumulator:
    """Collects the positive pairs' distances and the smallest negative ones, chunk by chunk.

    Args:
        gallery: The gallery's ids.
        q_pids: The pids of all queries (chunks must cover them in order).
        fprs: Target false positive rates, each in (0, 1].

    One query with positives at 0.1 and 0.5 and negatives at 0.2, 0.3, 0.4 and 0.6: at FPR 1/4
    the threshold stops below the second negative, which accepts the first positive only.

    >>> g_pids, g_camids = torch.tensor([1, 2, 3, 4, 1, 5]), torch.ones(6, dtype=torch.long)
    >>> roc = RocAccumulator(GalleryIndex(g_pids, g_camids), torch.tensor([1]), fprs=(0.25, 0.75))
    >>> dist = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    >>> roc.add(dist, q_pids=torch.tensor([1]), q_camids=torch.tensor([0]))
    >>> roc.compute()
    {'TPR@FPR=2e-01': 0.5, 'TPR@FPR=8e-01': 1.0}
    """

    def __init__(
        self, gallery: GalleryIndex, q_pids: torch.Tensor, fprs: Sequence[float] = DEFAULT_FPRS
    ) -> None:
        self.gallery = gallery
        self.fprs = check_fprs(fprs)
        self.num_negatives = int(gallery.num_different_id(q_pids).sum())
        self.capacity = min(self.num_negatives, math.floor(max(self.fprs) * self.num_negatives) + 1)
        self._smallest = torch.empty(0)
        self._pending: list[torch.Tensor] = []
        self._pending_size = 0
        self._bound = math.inf
        self._positives: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """The pairs of the queries of ``dist`` (c x num_gallery), following those added before."""
        rows, cols, relevant = self.gallery.same_id_pairs(q_pids, q_camids)
        self._positives.append(dist[rows[relevant], cols[relevant]].double().cpu())
        if self.capacity == 0:
            return
        candidates = (
            dist < self._bound
            if math.isfinite(self._bound)
            else torch.ones_like(dist, dtype=torch.bool)
        )
        c_rows, c_cols = candidates.nonzero(as_tuple=True)
        negative = self.gallery.pids[c_cols] != q_pids[c_rows]
        values = dist[c_rows[negative], c_cols[negative]].double().cpu()
        self._pending.append(values)
        self._pending_size += values.shape[0]
        if self._pending_size > self.capacity:
            self._merge()

    def _merge(self) -> None:
        values = torch.cat([self._smallest] + self._pending) if self._pending else self._smallest
        self._pending, self._pending_size = [], 0
        if values.shape[0] > self.capacity:
            values = torch.topk(values, self.capacity, largest=False, sorted=False).values
        self._smallest = values
        if values.shape[0] == self.capacity and self.capacity > 0:
            self._bound = float(values.max())

    def compute(self) -> dict[str, float]:
        """TPR (in [0, 1]) per target FPR, keyed by ``roc_key``."""
        return {roc_key(f): tpr for f, tpr in zip(self.fprs, self.tprs())}

    def tprs(self) -> list[float]:
        """TPR (in [0, 1]) at each target FPR, in the order of ``fprs`` (NaN without positives).

        Unlike :meth:`compute`, FPRs that ``roc_key`` spells alike (1e-4 and 1.2e-4) keep one
        value each: a curve's points.
        """
        self._merge()
        positives = (
            torch.cat(self._positives) if self._positives else torch.zeros(0, dtype=torch.float64)
        )
        negatives = torch.sort(self._smallest).values
        tprs = []
        for f in self.fprs:
            k = math.floor(f * self.num_negatives)
            if positives.shape[0] == 0:
                tpr = math.nan
            elif k >= self.num_negatives:
                tpr = 1.0
            else:
                tpr = float((positives < negatives[k]).sum()) / positives.shape[0]
            tprs.append(tpr)
        return tprs
