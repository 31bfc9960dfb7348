"""The gallery's pids and camids, indexed to list each query's same-pid items without a scan.

Shared by the ranking metric (``rank.py``), the CUHK03 classic CMC and the ROC: all three need,
for a chunk of queries, the gallery items with the query's pid, split into the relevant ones
(another camera) and the dropped ones (the query's camera too).
"""

from __future__ import annotations

import torch

__all__ = ["GalleryIndex", "expand_segments"]


def expand_segments(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment, offset) of every element when segment i holds counts[i] elements, in order.

    Same as ``repeat_interleave(arange(n), counts)`` and the position inside each segment;
    torch.repeat_interleave splits even tiny inputs across threads, which stalls on a busy machine.

    >>> segment, offset = expand_segments(torch.tensor([2, 0, 3]))
    >>> segment.tolist(), offset.tolist()
    ([0, 0, 2, 2, 2], [0, 1, 0, 1, 2])
    """
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    position = torch.arange(total, device=counts.device)
    segment = torch.searchsorted(ends, position, right=True)
    return segment, position - (ends - counts)[segment]


class GalleryIndex:
    """Gallery pids and camids, with the gallery sorted by pid to find a query's same-pid items.

    Args:
        g_pids: The gallery's pids (int64, on the device of the distances).
        g_camids: The gallery's camera ids, same length and device.

    >>> gallery = GalleryIndex(torch.tensor([7, 3, 7, 5]), torch.tensor([0, 1, 1, 0]))
    >>> rows, cols, relevant = gallery.same_id_pairs(torch.tensor([7, 5]), torch.tensor([1, 1]))
    >>> rows.tolist(), cols.tolist(), relevant.tolist()
    ([0, 0, 1], [0, 2, 3], [True, False, True])
    >>> gallery.num_different_id(torch.tensor([7, 5])).tolist()
    [2, 3]
    """

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
