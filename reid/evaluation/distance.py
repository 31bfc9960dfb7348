"""Feature distances named by TEST.METRIC (smaller = closer).

- ``cosine``: 1 - cos(a, b), computed as 1 - <a, b> on L2-normalised features (``prepare``
  normalises); values in [0, 2].
- ``euclidean``: the SQUARED Euclidean distance ||a - b||^2 (fastreid's convention; it ranks
  exactly like the Euclidean distance and is cheaper), clamped at 0 against rounding.

A distance works on prepared features: call ``prepare`` once, then ``pairwise`` on chunks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from reid.utils.registry import Registry

__all__ = [
    "DISTANCE_REGISTRY",
    "Distance",
    "CosineDistance",
    "EuclideanDistance",
    "build_distance",
    "compute_distmat",
]

DISTANCE_REGISTRY = Registry("DISTANCE")


class Distance(ABC):
    """``prepare`` features once, then ``pairwise`` (all pairs) or ``paired`` (row i with row i)."""

    def prepare(self, features: torch.Tensor) -> torch.Tensor:
        """The features as ``pairwise`` and ``paired`` take them (here: unchanged)."""
        return features

    @abstractmethod
    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """len(a) x len(b) distances."""

    @abstractmethod
    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances between a[i] and b[i]."""


class CosineDistance(Distance):
    """1 - cos(a, b): ``prepare`` L2-normalises, then 1 - <a, b>."""

    def prepare(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, p=2, dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - a @ b.t()

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - (a * b).sum(1)


class EuclideanDistance(Distance):
    """The squared Euclidean distance ||a - b||^2, clamped at 0."""

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dist = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :]
        dist.addmm_(a, b.t(), beta=1.0, alpha=-2.0)
        return dist.clamp_(min=0.0)

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).sum(1)


DISTANCE_REGISTRY.register(CosineDistance, name="cosine")
DISTANCE_REGISTRY.register(EuclideanDistance, name="euclidean")


def build_distance(name: str) -> Distance:
    """The distance registered as ``name`` (TEST.METRIC).

    Raises:
        RegistryKeyError: ``name`` is not registered; the message lists the registered names.
    """
    return DISTANCE_REGISTRY.get(name)()


def compute_distmat(
    query: torch.Tensor, gallery: torch.Tensor, metric: str = "cosine"
) -> torch.Tensor:
    """The full query x gallery distance matrix (for small sets; the evaluator works in chunks).

    Args:
        query: Query features, one row each.
        gallery: Gallery features, same width.
        metric: A registered distance: "cosine" or "euclidean" (squared).

    >>> query = torch.tensor([[3.0, 4.0]])
    >>> gallery = torch.tensor([[6.0, 8.0], [4.0, -3.0], [0.0, 2.0]])
    >>> compute_distmat(query, gallery, "euclidean").tolist()
    [[25.0, 50.0, 13.0]]
    >>> print(compute_distmat(query, gallery, "cosine"))
    tensor([[0.0000, 1.0000, 0.2000]])
    """
    distance = build_distance(metric)
    return distance.pairwise(distance.prepare(query), distance.prepare(gallery))
