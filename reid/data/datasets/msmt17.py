"""MSMT17 (Wei et al., CVPR 2018), V1 and V2 (masked faces) releases."""

from __future__ import annotations

import os
import re

from reid.config.schema import ConfigBlock, Key, configurable

from .bases import DatasetFormatError, ImageDataset, Layout, Record, read_list_file
from .build import DATASET_REGISTRY

MSMT17_CONFIG = ConfigBlock(
    "DATASETS.MSMT17",
    "MSMT17: which lists train.",
    {
        "TRAIN_ONLY": Key(
            False,
            "True = train on list_train.txt only (30,248 images); False = list_train + list_val "
            "(32,621, the usual setting).",
        ),
    },
)


LIST_FILES: tuple[str, ...] = (
    "list_train.txt",
    "list_val.txt",
    "list_query.txt",
    "list_gallery.txt",
)
# Release folder -> (train image folder, test image folder).
VERSIONS: dict[str, tuple[str, str]] = {
    "MSMT17_V1": ("train", "test"),
    "MSMT17_V2": ("mask_train_v2", "mask_test_v2"),
}
NAME_PATTERN = re.compile(r"^(?P<pid>\d+)_(?P<index>\d+)_(?P<cam>\d+)_\w+\.jpg$")


@DATASET_REGISTRY.register()
class MSMT17(ImageDataset):
    """MSMT17 from its list files: ``0000/0000_000_01_0303morning_0015_0.jpg 0``.

    The camera is the third ``_`` field (01..15). Training uses list_train + list_val (the usual
    setting) or list_train alone (``train_only``). Query and gallery labels restart at 0 in the
    lists; they are shifted by (largest train/val label + 1) so that test identities never collide
    with training identities (e.g. under DATASETS.COMBINEALL).

    Args:
        root: The data root holding ``MSMT17_V1/`` or ``MSMT17_V2/``, or that folder itself.
        train_only: Train on list_train.txt alone instead of list_train + list_val.
    """

    config_block = MSMT17_CONFIG

    name = "MSMT17"
    layouts = tuple(
        Layout(folder, (train_dir, test_dir) + LIST_FILES)
        for version, (train_dir, test_dir) in VERSIONS.items()
        for folder in (version, os.path.join("msmt17", version))
    )
    layout_help = """\
<root>/MSMT17_V1/                       (or MSMT17_V2/ with mask_train_v2/ and mask_test_v2/)
    train/0000/0000_000_01_0303morning_0015_0.jpg ...
    test/0000/0000_000_01_0303morning_0018_0.jpg ...
    list_train.txt   list_val.txt   list_query.txt   list_gallery.txt
        (lines like "0000/0000_000_01_0303morning_0015_0.jpg 0")"""
    camera_range = (1, 15)

    @configurable
    def __init__(self, root: str, train_only: bool = False) -> None:
        self.train_only = train_only
        super().__init__(root)

    def _read(self, list_name: str, image_dir: str, pid_offset: int) -> list[Record]:
        list_path = os.path.join(self.dataset_dir, list_name)
        records = []
        for lineno, fields in read_list_file(list_path):
            where = f"{list_path}, line {lineno}"
            if len(fields) != 2 or not fields[1].isdigit():
                raise DatasetFormatError(
                    f"{self.name}: cannot parse {where}: {' '.join(fields)!r}; expected "
                    f"'<folder>/<image>.jpg <label>' like "
                    f"'0000/0000_000_01_0303morning_0015_0.jpg 0'"
                )
            rel_path, label = fields
            m = NAME_PATTERN.match(os.path.basename(rel_path))
            if m is None:
                raise DatasetFormatError(
                    f"{self.name}: cannot parse the image name {rel_path!r} at {where}; expected "
                    f"names like 0000_000_01_0303morning_0015_0.jpg (pid, index, camera 01..15, "
                    f"time, frame, box)"
                )
            cam = int(m.group("cam"))
            if not self.camera_range[0] <= cam <= self.camera_range[1]:
                raise DatasetFormatError(
                    f"{self.name}: camera {cam} of {rel_path!r} at {where} is outside 1..15"
                )
            records.append(
                Record(
                    os.path.join(image_dir, rel_path), int(label) + pid_offset, cam - 1, self.name
                )
            )
        return records

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        version = (
            "MSMT17_V1"
            if os.path.isdir(os.path.join(self.dataset_dir, VERSIONS["MSMT17_V1"][0]))
            else "MSMT17_V2"
        )
        train_dir, test_dir = (os.path.join(self.dataset_dir, d) for d in VERSIONS[version])
        train = self._read("list_train.txt", train_dir, 0)
        val = self._read("list_val.txt", train_dir, 0)
        offset = max((r.pid for r in train + val), default=-1) + 1
        query = self._read("list_query.txt", test_dir, offset)
        gallery = self._read("list_gallery.txt", test_dir, offset)
        train_records = train if self.train_only else train + val
        return (
            sorted(train_records, key=lambda r: r.path),
            sorted(query, key=lambda r: r.path),
            sorted(gallery, key=lambda r: r.path),
        )

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return {
            "train": (1041, 30248 if self.train_only else 32621),
            "query": (3060, 11659),
            "gallery": (3060, 82161),
        }
