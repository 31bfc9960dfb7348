"""Batches shared by the loss tests: float64 features with labels of chosen class sizes."""

from collections.abc import Callable, Sequence

import pytest
import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def labelled_batch(
    sizes: Sequence[int], dim: int = 6, seed: int = 0, contiguous: bool = False
) -> Batch:
    g = torch.Generator().manual_seed(seed)
    label_values = list(range(len(sizes))) if contiguous else [3 * c + 7 for c in range(len(sizes))]
    y = torch.cat(
        [torch.full((n,), label_values[c], dtype=torch.int64) for c, n in enumerate(sizes)]
    )
    perm = torch.randperm(len(y), generator=g)
    f = torch.randn(len(y), dim, generator=g, dtype=torch.float64)
    return f, y[perm]


@pytest.fixture
def make_batch() -> Callable[..., Batch]:
    return labelled_batch
