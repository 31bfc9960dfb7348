"""Batch class prototypes (means of the samples of each class) shared by P2S, PN and MPN."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Prototypes(NamedTuple):
    sums: torch.Tensor  # P x D sum of the reference vectors of each class of the batch
    counts: torch.Tensor  # P class sizes
    inverse: torch.Tensor  # B index of each sample's class
    own: torch.Tensor  # B x P boolean, True at each sample's own class

    @property
    def means(self) -> torch.Tensor:
        return self.sums / self.counts.unsqueeze(1).to(self.sums.dtype)

    def leave_one_out(self, refs: torch.Tensor) -> torch.Tensor:
        """B x D: the mean of each sample's class without the sample (zero for singletons)."""
        others = (self.counts[self.inverse] - 1).clamp_min(1).unsqueeze(1).to(refs.dtype)
        return (self.sums[self.inverse] - refs) / others


def batch_prototypes(refs: torch.Tensor, y: torch.Tensor) -> Prototypes:
    """The class sums, sizes and memberships of the B x D ``refs`` under the B labels ``y``.

    >>> refs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    >>> batch_prototypes(refs, torch.tensor([5, 5, 7])).means
    tensor([[0.5000, 0.5000],
            [2.0000, 2.0000]])
    """
    _, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.shape[0], refs.shape[1], dtype=refs.dtype, device=refs.device)
    sums = sums.index_add(0, inverse, refs)
    own = torch.zeros(y.shape[0], counts.shape[0], dtype=torch.bool, device=y.device)
    own.scatter_(1, inverse.unsqueeze(1), True)
    return Prototypes(sums, counts, inverse, own)
