"""Feature distances of TEST.METRIC."""

import pytest
import torch

from reid.evaluation.distance import build_distance, compute_distmat
from reid.utils.registry import RegistryKeyError


def test_cosine_and_squared_euclidean_values():
    q = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    g = torch.tensor([[6.0, 8.0], [0.0, 2.0], [-1.0, 0.0]])
    cosine = compute_distmat(q, g, "cosine")
    torch.testing.assert_close(cosine, torch.tensor([[0.0, 1 - 0.8, 1 + 0.6], [1 - 0.6, 1.0, 2.0]]))
    euclidean = compute_distmat(q, g, "euclidean")
    torch.testing.assert_close(euclidean, torch.tensor([[25.0, 13.0, 32.0], [89.0, 5.0, 4.0]]))


@pytest.mark.parametrize("name", ["cosine", "euclidean"])
def test_paired_agrees_with_pairwise(name):
    d = build_distance(name)
    a, b = d.prepare(torch.randn(5, 7)), d.prepare(torch.randn(5, 7))
    torch.testing.assert_close(
        d.paired(a, b), torch.diagonal(d.pairwise(a, b)), atol=1e-5, rtol=1e-5
    )


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(RegistryKeyError, match="cosine, euclidean"):
        build_distance("manhattan")
