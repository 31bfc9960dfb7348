"""VERI-Wild (Lou et al., CVPR 2019) with its small / medium / large test sets."""

from __future__ import annotations

import os
from typing import ClassVar

from .bases import DatasetFormatError, ImageDataset, Layout, Record, read_list_file
from .build import DATASET_REGISTRY

LISTS = "train_test_split"


def _layouts(test_size: int) -> tuple[Layout, ...]:
    required = (
        "images",
        f"{LISTS}/train_list.txt",
        f"{LISTS}/vehicle_info.txt",
        f"{LISTS}/test_{test_size}_query.txt",
        f"{LISTS}/test_{test_size}.txt",
    )
    return tuple(Layout(folder, required) for folder in ("VERI-Wild", "VeRi-Wild", "veri-wild"))


@DATASET_REGISTRY.register()
class VeRiWild(ImageDataset):
    """VERI-Wild in its official layout, read as fastreid reads it; tested on the large set.

    ``train_test_split/vehicle_info.txt`` (a header line, then ``<vehicle id>/<image id>;<camera
    id>;<time>;...``) gives each image's camera and file ``images/<vehicle id>/<image id>.jpg``;
    the lists hold ``<vehicle id>/<image id>`` per line: ``train_list.txt`` the training images,
    ``test_<N>_query.txt`` / ``test_<N>.txt`` the query / gallery of the N-vehicle test set. Camera
    ids are kept as vehicle_info.txt writes them. ``VeRiWild`` and ``LargeVeRiWild`` use the
    10,000-vehicle lists, ``MediumVeRiWild`` 5,000 and ``SmallVeRiWild`` 3,000 (fastreid's names).

    Args:
        root: The data root holding ``VERI-Wild/``, or that folder itself.
    """

    name = "VeRiWild"
    test_size: ClassVar[int] = 10000
    layouts = _layouts(10000)
    layout_help = """\
<root>/VERI-Wild/
    images/<vehicle id>/<image id>.jpg         e.g. images/00001/000001.jpg
    train_test_split/
        vehicle_info.txt                       header, then "<vid>/<image id>;<camera id>;..."
        train_list.txt                         lines "<vid>/<image id>", e.g. "00001/000001"
        test_3000_query.txt   test_3000.txt    (SmallVeRiWild: query, gallery)
        test_5000_query.txt   test_5000.txt    (MediumVeRiWild)
        test_10000_query.txt  test_10000.txt   (VeRiWild, LargeVeRiWild)"""

    def _list_path(self, name: str) -> str:
        return os.path.join(self.dataset_dir, LISTS, name)

    def _vehicle_info(self) -> dict[str, tuple[str, int]]:
        """Image id -> (vehicle folder, camera id), from vehicle_info.txt (header skipped)."""
        path = self._list_path("vehicle_info.txt")
        info: dict[str, tuple[str, int]] = {}
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            fields = line.strip().split(";")
            name = fields[0].split("/")
            if (
                len(fields) < 2
                or len(name) != 2
                or not name[0].isdigit()
                or not fields[1].strip().isdigit()
            ):
                raise DatasetFormatError(
                    f"{self.name}: cannot parse {path}, line {lineno}: {line.strip()!r}; expected "
                    f"'<vehicle id>/<image id>;<camera id>;...' like '00001/000001;35;...'"
                )
            info[name[1]] = (name[0], int(fields[1]))
        return info

    def _read(self, list_name: str, info: dict[str, tuple[str, int]]) -> list[Record]:
        path = self._list_path(list_name)
        records = []
        for lineno, fields in read_list_file(path):
            parts = fields[0].split("/") if len(fields) == 1 else []
            if len(parts) != 2 or not parts[0].isdigit():
                raise DatasetFormatError(
                    f"{self.name}: cannot parse {path}, line {lineno}: {' '.join(fields)!r}; "
                    f"expected '<vehicle id>/<image id>' like '00001/000001'"
                )
            image_id = os.path.splitext(parts[1])[0]
            if image_id not in info:
                raise DatasetFormatError(
                    f"{self.name}: {path}, line {lineno}: image {image_id} is not in "
                    f"{self._list_path('vehicle_info.txt')}"
                )
            folder, camid = info[image_id]
            if int(folder) != int(parts[0]):
                raise DatasetFormatError(
                    f"{self.name}: {path}, line {lineno}: image {image_id} belongs to vehicle "
                    f"{folder} in vehicle_info.txt, not {parts[0]}"
                )
            image = os.path.join(self.dataset_dir, "images", folder, image_id + ".jpg")
            records.append(Record(image, int(parts[0]), camid, self.name))
        return sorted(records, key=lambda r: r.path)

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        info = self._vehicle_info()
        return (
            self._read("train_list.txt", info),
            self._read(f"test_{self.test_size}_query.txt", info),
            self._read(f"test_{self.test_size}.txt", info),
        )

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        size = self.test_size
        return {"train": (30671, 277797), "query": (size, None), "gallery": (size, None)}


@DATASET_REGISTRY.register()
class SmallVeRiWild(VeRiWild):
    """VERI-Wild with the 3,000-vehicle test set (test_3000_query.txt / test_3000.txt)."""

    name = "SmallVeRiWild"
    test_size = 3000
    layouts = _layouts(3000)


@DATASET_REGISTRY.register()
class MediumVeRiWild(VeRiWild):
    """VERI-Wild with the 5,000-vehicle test set (test_5000_query.txt / test_5000.txt)."""

    name = "MediumVeRiWild"
    test_size = 5000
    layouts = _layouts(5000)


@DATASET_REGISTRY.register()
class LargeVeRiWild(VeRiWild):
    """VERI-Wild with the 10,000-vehicle test set, as VeRiWild (fastreid has both names)."""

    name = "LargeVeRiWild"
    test_size = 10000
    layouts = _layouts(10000)
