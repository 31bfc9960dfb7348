"""The classic CUHK03 single-gallery-shot CMC, with seeded repeats.

For each repeat one gallery image is drawn per gallery identity; for the query's own identity
the draw is among its kept images (other cameras). The rank of the query's drawn image among the
drawn images (ties by gallery index) gives the CMC of that repeat; the CMC is averaged over the
repeats and then over the valid queries. The draws for the other identities are shared by all
queries of a repeat (the marginal law per query is the one of a per-query draw); every draw is
made up front from ``seed``, so the result does not depend on the chunking or the device.
"""

from __future__ import annotations

import numpy as np
import torch

from reid.config.schema import ConfigBlock, InvalidArgument, Key, declare

from .gallery import GalleryIndex

__all__ = ["CUHK03_CLASSIC_CONFIG", "SingleGalleryShotCMC", "check_repeats"]


CUHK03_CLASSIC_CONFIG = declare(
    ConfigBlock(
        "TEST.CUHK03_CLASSIC",
        "The classic CUHK03 single-gallery-shot CMC (reid/evaluation/rank_cuhk03.py).",
        {
            "ENABLED": Key(
                False,
                "Report the single-gallery-shot CMC on the test sets whose dataset asks for it "
                "(single_gallery_shot_cmc, True on CUHK03); mAP and mINP stay the full gallery's.",
            ),
            "REPEATS": Key(10, "Number of seeded gallery draws the CMC is averaged over."),
            "SEED": Key(0, "Seed of the draws."),
        },
    )
)


def check_repeats(repeats: int) -> int:
    """The number of draws, checked (>= 1)."""
    if repeats < 1:
        raise InvalidArgument(
            "repeats", f"must be >= 1 (the classic CMC averages that many draws), got {repeats}"
        )
    return int(repeats)


class SingleGalleryShotCMC:
    """Accumulates the single-gallery-shot ranks chunk by chunk (queries in order).

    Args:
        g_pids: The gallery's pids (int64, on the device of the distances).
        g_camids: The gallery's camera ids.
        num_query: The number of queries that ``add`` will be given in all.
        repeats: Seeded draws of one gallery image per identity; the CMC is their mean.
        seed: Seed of the draws.
    """

    def __init__(
        self,
        g_pids: torch.Tensor,
        g_camids: torch.Tensor,
        num_query: int,
        repeats: int = 10,
        seed: int = 0,
    ) -> None:
        repeats = check_repeats(repeats)
        self.gallery = GalleryIndex(g_pids, g_camids)
        device = g_pids.device
        generator = torch.Generator().manual_seed(int(seed))
        identities, inverse = torch.unique(g_pids.cpu(), return_inverse=True)
        group_sizes = torch.bincount(inverse)
        group_start = torch.cumsum(group_sizes, 0) - group_sizes
        picks = []
        for _ in range(repeats):
            perm = torch.randperm(g_pids.shape[0], generator=generator)
            by_identity = perm[torch.argsort(inverse[perm], stable=True)]
            picks.append(by_identity[group_start])
        self.identities = identities.to(device)
        self.picks = torch.stack(picks).to(device)  # repeats x identities: one gallery index each
        self.draws = torch.rand(num_query, repeats, generator=generator, dtype=torch.float64).to(
            device
        )
        self._next_query = 0
        self._ranks: list[torch.Tensor] = []
        self._valid: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """Ranks of the queries of ``dist`` (c x num_gallery), which follow those added before."""
        c = dist.shape[0]
        rows, cols, relevant = self.gallery.same_id_pairs(q_pids, q_camids)
        rel_rows, rel_cols = rows[relevant], cols[relevant]
        num_rel = torch.bincount(rel_rows, minlength=c)
        row_start = torch.cumsum(num_rel, 0) - num_rel
        draws = self.draws[self._next_query : self._next_query + c]
        self._next_query += c
        choice = torch.minimum(
            (draws * num_rel[:, None]).long(), (num_rel - 1).clamp(min=0)[:, None]
        )
        pos_index = (row_start[:, None] + choice).clamp(max=max(0, rel_cols.shape[0] - 1))
        pos_cols = rel_cols[pos_index] if rel_cols.shape[0] else torch.zeros_like(choice)
        pos_dist = dist.gather(1, pos_cols)
        other_identity = self.identities[None, :] != q_pids[:, None]
        ranks = []
        for r in range(self.picks.shape[0]):
            cols_r = self.picks[r]
            d = dist[:, cols_r]
            p_d, p_c = pos_dist[:, r : r + 1], pos_cols[:, r : r + 1]
            ahead = (d < p_d) | ((d == p_d) & (cols_r[None, :] < p_c))
            ranks.append(1 + (ahead & other_identity).sum(1))
        self._ranks.append(torch.stack(ranks, 1).cpu())
        self._valid.append((num_rel > 0).cpu())

    def compute(self, max_rank: int = 50) -> np.ndarray:
        """The CMC over the valid queries and the repeats (length ``min(max_rank, gallery)``).

        Raises:
            ValueError: No query has a relevant item.
        """
        ranks = torch.cat(self._ranks)[torch.cat(self._valid)]
        if ranks.shape[0] == 0:
            raise ValueError(
                "no query has a relevant gallery item: the CUHK03 classic CMC is undefined"
            )
        max_rank = min(max_rank, self.gallery.num)
        hits = torch.bincount(ranks.reshape(-1).clamp(max=max_rank + 1), minlength=max_rank + 2)
        return (torch.cumsum(hits[1 : max_rank + 1], 0).double() / ranks.numel()).numpy()
