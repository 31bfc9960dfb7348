"""Market-1501 (Zheng et al., ICCV 2015)."""

from __future__ import annotations

import re

from .bases import FolderDataset, Layout
from .build import DATASET_REGISTRY

MARKET_SPLIT_DIRS: dict[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}


@DATASET_REGISTRY.register()
class Market1501(FolderDataset):
    """Market-1501: ``0002_c1s1_000451_03.jpg`` = pid, camera 1..6, sequence, frame, box.

    Pid ``-1`` (junk boxes) is dropped; pid ``0000`` (distractors) is kept in the gallery only, as
    negatives that never match a query, and never trained on.
    """

    name = "Market1501"
    split_dirs = MARKET_SPLIT_DIRS
    layouts = tuple(
        Layout(folder, tuple(MARKET_SPLIT_DIRS.values()))
        for folder in (
            "Market-1501-v15.09.15",
            "market1501/Market-1501-v15.09.15",
            "Market-1501",
            "market1501",
        )
    )
    layout_help = """\
<root>/Market-1501-v15.09.15/
    bounding_box_train/   0002_c1s1_000451_03.jpg ...  (12,936 images)
    query/                0001_c1s1_001051_00.jpg ...  (3,368 images)
    bounding_box_test/    0000_c1s1_000151_01.jpg, -1_c1s1_000401_03.jpg ...  (19,732 files)"""
    pattern = re.compile(
        r"^(?P<pid>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})\.jpg$"
    )
    name_example = (
        "0002_c1s1_000451_03.jpg (pid 4 digits or -1, camera c1..c6, sequence s1..s6, frame, box)"
    )
    camera_range: tuple[int, int | None] = (1, 6)
    junk_pids = frozenset({-1})
    non_identity_pids = frozenset({0})

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return {"train": (751, 12936), "query": (750, 3368), "gallery": (751, 15913)}
