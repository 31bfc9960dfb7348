"""Test sets whose gallery is a random draw (VehicleID): scoring the mean over several draws.

A registered dataset class with a ``draw_gallery(records, seed) -> (query, gallery)`` static or
class method draws its gallery at random (see
:meth:`reid.data.datasets.vehicleid.VehicleID.draw_gallery`). With TEST.GALLERY_DRAWS N > 1, the
features of its test images are extracted once and every metric is the mean over the draws of
seeds 0..N-1 (the published VehicleID protocol: N = 10). A draw re-splits the same images, so it
is a set of indices into them plus the camera ids the draw gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from yacs.config import CfgNode

from reid.config.schema import ConfigError
from reid.data.datasets import DATASET_REGISTRY
from reid.data.datasets.bases import Record

__all__ = ["GalleryDraw", "check_gallery_draws", "draws_gallery", "gallery_draws"]


@dataclass(frozen=True)
class GalleryDraw:
    """One split of a test set's images into query and gallery.

    Args:
        seed: The draw's seed.
        order: int64 indices into the test images (in the loader's order): the draw's queries,
            then its gallery.
        num_query: How many of ``order`` are queries.
        camids: The camera ids the draw gives the images of ``order``.
    """

    seed: int
    order: torch.Tensor
    num_query: int
    camids: torch.Tensor


def draws_gallery(dataset_name: str | None) -> bool:
    """Whether the registered dataset ``dataset_name`` draws its gallery at random (its class has
    a callable ``draw_gallery``); False for a name that is not a registered dataset.

    >>> draws_gallery("SmallVehicleID"), draws_gallery("Market1501"), draws_gallery("nonsense")
    (True, False, False)
    """
    if not dataset_name or dataset_name not in DATASET_REGISTRY:
        return False
    return callable(getattr(DATASET_REGISTRY.get(dataset_name), "draw_gallery", None))


def gallery_draws(dataset_name: str, records: Sequence[Record], count: int) -> list[GalleryDraw]:
    """The draws of seeds 0..count-1 of ``dataset_name``'s gallery, as indices into ``records``.

    Args:
        dataset_name: A registered dataset that draws its gallery (see :func:`draws_gallery`).
        records: Its test images in the order their features are extracted (the loader's
            query then gallery of the split it was built with).
        count: The number of draws (>= 1).

    Raises:
        ValueError: The dataset does not draw its gallery, ``count`` < 1, or a draw holds an image
            that is not among ``records`` (or holds one twice).
    """
    if count < 1:
        raise ValueError(f"the number of gallery draws must be >= 1, got {count}")
    if not draws_gallery(dataset_name):
        raise ValueError(f"{dataset_name} does not draw its gallery at random")
    draw = DATASET_REGISTRY.get(dataset_name).draw_gallery
    index = {record.path: i for i, record in enumerate(records)}
    if len(index) != len(records):
        raise ValueError(f"{dataset_name}: the test images hold a path twice")
    draws = []
    for seed in range(count):
        query, gallery = draw(records, seed)
        split = list(query) + list(gallery)
        missing = [r.path for r in split if r.path not in index]
        if missing or len(split) != len(records):
            raise ValueError(
                f"{dataset_name}: gallery draw {seed} does not re-split the {len(records)} test "
                f"images (it has {len(split)}; not among them: {missing[:3]})"
            )
        order = torch.tensor([index[r.path] for r in split], dtype=torch.int64)
        camids = torch.tensor([r.camid for r in split], dtype=torch.int64)
        draws.append(GalleryDraw(seed, order, len(query), camids))
    return draws


def check_gallery_draws(cfg: CfgNode) -> None:
    """Raise unless TEST.GALLERY_DRAWS can be honoured: >= 1, and above 1 only when a test set of
    DATASETS.TESTS draws its gallery at random.

    Raises:
        ConfigError: Naming TEST.GALLERY_DRAWS.
    """
    count = int(cfg.TEST.GALLERY_DRAWS)
    if count < 1:
        raise ConfigError(f"TEST.GALLERY_DRAWS must be >= 1, got {count}")
    tests = list(cfg.DATASETS.TESTS)
    if count > 1 and not any(draws_gallery(name) for name in tests):
        drawing = sorted(n for n, _ in DATASET_REGISTRY if draws_gallery(n))
        raise ConfigError(
            f"TEST.GALLERY_DRAWS {count} averages random gallery draws, but no test set of "
            f"DATASETS.TESTS ({', '.join(tests) or 'none'}) draws its gallery at random (those "
            f"that do: {', '.join(drawing)}); set it to 1"
        )
