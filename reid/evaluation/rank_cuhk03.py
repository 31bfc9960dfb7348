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

from reid.config.schema import ConfigBlock, Key, declare

from .rank import GalleryIndex

__all__ = ["SingleGalleryShotCMC"]


CUHK03_CLASSIC_CONFIG = declare(
    ConfigBlock(
        "TEST.CUHK03_CLASSIC",
        "The classic CUHK03 single-gallery-shot CMC.",
        {
            "ENABLED": Key(
                False,
                "Single-gallery-shot CMC on CUHK03 test sets.",
            ),
            "REPEATS": Key(
                10,
                "Number of seeded gallery draws averaged.",
            ),
            "SEED": Key(
                0,
                "Seed of the first draw (draw r uses SEED + r).",
            ),
        },
    )
)


class SingleGalleryShotCMC:
    """Accumulates the single-gallery-shot ranks chunk by chunk (queries in order)."""

    def __init__(
        self,
        g_pids: torch.Tensor,
        g_camids: torch.Tensor,
        num_query: int,
        repeats: int = 10,
        seed: int = 0,
    ) -> None:
        if repeats < 1:
            raise ValueError(
                f"the CUHK03 classic metric needs at least 1 repeat, got repeats={repeats}"
            )
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
        self._ranks: list[torch.Tensor] = []
        self._valid: list[torch.Tensor] = []

    @torch.no_grad()
    def add(
        self, start: int, dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor
    ) -> None:
        c = dist.shape[0]
        rows, cols, relevant = self.gallery.same_id_pairs(q_pids, q_camids)
        rel_rows, rel_cols = rows[relevant], cols[relevant]
        num_rel = torch.bincount(rel_rows, minlength=c)
        valid = num_rel > 0
        row_start = torch.cumsum(num_rel, 0) - num_rel
        draws = self.draws[start : start + c]
        choice = torch.minimum(
            (draws * num_rel[:, None]).long(), (num_rel - 1).clamp(min=0)[:, None]
        )
        pos_index = (row_start[:, None] + choice).clamp(max=max(0, rel_cols.shape[0] - 1))
        if rel_cols.shape[0] == 0:
            pos_cols = torch.zeros_like(choice)
        else:
            pos_cols = rel_cols[pos_index]
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
        self._valid.append(valid.cpu())

    def compute(self, max_rank: int = 50) -> np.ndarray:
        ranks = torch.cat(self._ranks)[torch.cat(self._valid)]
        if ranks.shape[0] == 0:
            raise ValueError(
                "no query has a relevant gallery item: the CUHK03 classic CMC is undefined"
            )
        max_rank = min(max_rank, self.gallery.num)
        hits = torch.bincount(ranks.reshape(-1).clamp(max=max_rank + 1), minlength=max_rank + 2)[
            1 : max_rank + 1
        ]
        return (torch.cumsum(hits, 0).double() / ranks.numel()).numpy()
