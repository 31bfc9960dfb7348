"""PKU VehicleID (Liu et al., CVPR 2016): the training set with the whole test list, and the
small / medium / large test sets."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable

from .bases import DatasetFormatError, ImageDataset, Layout, Record, read_list_file
from .build import DATASET_REGISTRY

VEHICLEID_CONFIG = ConfigBlock(
    "DATASETS.VEHICLEID",
    "VehicleID (and Small / Medium / LargeVehicleID): the query / gallery draw.",
    {
        "REPEAT": Key(
            0,
            "Seed of the gallery draw (one image per test vehicle to the gallery, the rest to the "
            "query); the published protocol averages the draws of seeds 0..9, which TEST."
            "GALLERY_DRAWS 10 does in one evaluation.",
        ),
    },
)


# VehicleID has no camera ids: query and gallery get these two, so that the same-camera rule
# drops nothing.
QUERY_CAMID = 0
GALLERY_CAMID = 1


def _layouts(test_size: int) -> tuple[Layout, ...]:
    required = (
        "image",
        "train_test_split/train_list.txt",
        f"train_test_split/test_list_{test_size}.txt",
    )
    return tuple(
        Layout(folder, required) for folder in ("VehicleID_V1.0", "vehicleid", "PKU-VehicleID")
    )


@DATASET_REGISTRY.register()
class VehicleID(ImageDataset):
    """VehicleID: the training list and the whole 13,164-vehicle test list (fastreid's
    ``VehicleID``, the name its configs train on); the subclasses test on the 800 / 1,600 /
    2,400-vehicle lists of the paper.

    Lists hold ``<image id> <vehicle id>`` per line; the image is ``image/<image id>.jpg``. Test
    protocol: for every test vehicle one image is drawn into the gallery and the others go to the
    query, with ``random.Random(repeat)`` over vehicles in ascending id order and each vehicle's
    images in ascending id order; the published protocol averages repeats 0..9.

    Args:
        root: The data root holding ``VehicleID_V1.0/``, or that folder itself.
        repeat: Seed of the gallery draw (>= 0).
    """

    config_block = VEHICLEID_CONFIG

    name = "VehicleID"
    test_size: ClassVar[int] = 13164
    layouts = _layouts(13164)
    layout_help = """\
<root>/VehicleID_V1.0/
    image/0000001.jpg ...
    train_test_split/
        train_list.txt          (lines "<image id> <vehicle id>", e.g. "0004286 0002")
        test_list_800.txt   test_list_1600.txt   test_list_2400.txt   test_list_13164.txt"""

    @configurable
    def __init__(self, root: str, repeat: int = 0) -> None:
        if repeat < 0:
            raise InvalidArgument("repeat", f"must be >= 0, got {repeat}")
        self.repeat = repeat
        super().__init__(root)

    def _read(self, list_name: str) -> list[tuple[str, int]]:
        list_path = os.path.join(self.dataset_dir, "train_test_split", list_name)
        items = []
        for lineno, fields in read_list_file(list_path):
            if len(fields) != 2 or not fields[1].isdigit():
                raise DatasetFormatError(
                    f"{self.name}: cannot parse {list_path}, line {lineno}: {' '.join(fields)!r}; "
                    f"expected '<image id> <vehicle id>' like '0004286 0002'"
                )
            items.append(
                (os.path.join(self.dataset_dir, "image", fields[0] + ".jpg"), int(fields[1]))
            )
        return items

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        train = sorted(
            (Record(path, vid, 0, self.name) for path, vid in self._read("train_list.txt")),
            key=lambda r: r.path,
        )
        test = [
            Record(path, vid, QUERY_CAMID, self.name)
            for path, vid in self._read(f"test_list_{self.test_size}.txt")
        ]
        query, gallery = self.draw_gallery(test, self.repeat)
        return train, query, gallery

    @staticmethod
    def draw_gallery(records: Sequence[Record], seed: int) -> tuple[list[Record], list[Record]]:
        """The test protocol's split of the test images: per vehicle one image to the gallery, the
        others to the query.

        ``random.Random(seed)`` draws, over the vehicles in ascending id order, the index of the
        gallery image among the vehicle's image paths in ascending order. Query images get camera
        id 0, gallery images 1, so that the same-camera rule drops nothing.

        Args:
            records: The test images (any order, any camera ids).
            seed: The draw's seed (``DATASETS.VEHICLEID.REPEAT``; the evaluation's
                ``TEST.GALLERY_DRAWS`` N scores the draws of seeds 0..N-1).

        Returns:
            (query, gallery), each sorted by path.

        >>> images = [Record(f"{i}.jpg", vid, 0, "VehicleID") for i, vid in enumerate([7, 7, 7, 9])]
        >>> query, gallery = VehicleID.draw_gallery(images, seed=0)
        >>> [(r.path, r.camid) for r in gallery], [r.path for r in query]
        ([('1.jpg', 1), ('3.jpg', 1)], ['0.jpg', '2.jpg'])
        """
        by_vehicle: dict[int, list[Record]] = defaultdict(list)
        for record in records:
            by_vehicle[record.pid].append(record)
        rng = random.Random(seed)
        query: list[Record] = []
        gallery: list[Record] = []
        for vid in sorted(by_vehicle):
            members = sorted(by_vehicle[vid], key=lambda r: r.path)
            pick = rng.randrange(len(members))
            for i, r in enumerate(members):
                camid = GALLERY_CAMID if i == pick else QUERY_CAMID
                (gallery if i == pick else query).append(Record(r.path, vid, camid, r.dataset))
        return sorted(query, key=lambda r: r.path), sorted(gallery, key=lambda r: r.path)

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return {"train": (13164, 113346), "gallery": (self.test_size, self.test_size)}


@DATASET_REGISTRY.register()
class SmallVehicleID(VehicleID):
    """VehicleID with test_list_800.txt (800 test vehicles)."""

    name = "SmallVehicleID"
    test_size = 800
    layouts = _layouts(800)


@DATASET_REGISTRY.register()
class MediumVehicleID(VehicleID):
    """VehicleID with test_list_1600.txt (1,600 test vehicles)."""

    name = "MediumVehicleID"
    test_size = 1600
    layouts = _layouts(1600)


@DATASET_REGISTRY.register()
class LargeVehicleID(VehicleID):
    """VehicleID with test_list_2400.txt (2,400 test vehicles)."""

    name = "LargeVehicleID"
    test_size = 2400
    layouts = _layouts(2400)
