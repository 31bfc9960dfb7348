"""DukeMTMC-reID (Zheng et al., ICCV 2017, from Ristani et al.'s DukeMTMC)."""

from __future__ import annotations

import re

from .bases import FolderDataset, Layout
from .build import DATASET_REGISTRY

DUKE_SPLIT_DIRS: dict[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}


@DATASET_REGISTRY.register()
class DukeMTMC(FolderDataset):
    """DukeMTMC-reID: ``0001_c2_f0046182.jpg`` = pid, camera 1..8, frame.

    No junk; the gallery's 408 extra identities (distractors with their own pids) stay identities.
    """

    name = "DukeMTMC"
    split_dirs = DUKE_SPLIT_DIRS
    layouts = tuple(
        Layout(folder, tuple(DUKE_SPLIT_DIRS.values()))
        for folder in ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID")
    )
    layout_help = """\
<root>/DukeMTMC-reID/
    bounding_box_train/   0001_c2_f0046182.jpg ...  (16,522 images)
    query/                0005_c2_f0046985.jpg ...  (2,228 images)
    bounding_box_test/    0002_c1_f0044158.jpg ...  (17,661 images)"""
    pattern = re.compile(r"^(?P<pid>\d{4})_c(?P<cam>\d)_f(?P<frame>\d{7})\.jpg$")
    name_example = "0001_c2_f0046182.jpg (pid 4 digits, camera c1..c8, frame f + 7 digits)"
    camera_range: tuple[int, int | None] = (1, 8)

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return {"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)}
