"""VeRi-776 (Liu et al., ICME 2016 / ECCV 2016)."""

from __future__ import annotations

import re

from .bases import FolderDataset, Layout
from .build import DATASET_REGISTRY

VERI_SPLIT_DIRS: dict[str, str] = {
    "train": "image_train",
    "query": "image_query",
    "gallery": "image_test",
}


@DATASET_REGISTRY.register()
class VeRi(FolderDataset):
    """VeRi-776: ``0001_c001_00016450_0.jpg`` = vehicle id, camera c001..c020, timestamp, index."""

    name = "VeRi"
    split_dirs = VERI_SPLIT_DIRS
    layouts = tuple(
        Layout(folder, tuple(VERI_SPLIT_DIRS.values())) for folder in ("VeRi", "veri", "VeRi-776")
    )
    layout_help = """\
<root>/VeRi/
    image_train/   0001_c001_00016450_0.jpg ...  (37,778 images)
    image_query/   0002_c002_00030600_0.jpg ...  (1,678 images)
    image_test/    0002_c002_00030615_1.jpg ...  (11,579 images)"""
    pattern = re.compile(r"^(?P<pid>\d{4})_c(?P<cam>\d{3})_(?P<time>\d+)_(?P<idx>\d+)\.jpg$")
    name_example = (
        "0001_c001_00016450_0.jpg (vehicle id 4 digits, camera c001..c020, timestamp, index)"
    )
    camera_range: tuple[int, int | None] = (1, 20)

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return {"train": (576, 37778), "query": (200, 1678), "gallery": (200, 11579)}
