"""An out-of-tree dataset: VIPeR (Gray et al., 2007), one file with its config block.

632 people, two cameras: ``VIPeR/cam_a/000_45.bmp`` and ``VIPeR/cam_b/000_90.bmp`` hold person
000. The protocol trains on a random half of the people and tests on the other half, camera A
images as queries and camera B images as the gallery; DATASETS.VIPER.SPLIT_SEED picks the half.
"""

from __future__ import annotations

import os
import random

from reid.config import ConfigBlock, InvalidArgument, Key, configurable
from reid.data.datasets import DATASET_REGISTRY
from reid.data.datasets.bases import DatasetFormatError, ImageDataset, Layout, Record

VIPER_CONFIG = ConfigBlock(
    "DATASETS.VIPER",
    "VIPeR: which random half of the 632 people is the training half.",
    {
        "SPLIT_SEED": Key(
            0, "Seed of the train / test split of the people (the protocol's 10: 0..9)."
        )
    },
)


@DATASET_REGISTRY.register()
class VIPeR(ImageDataset):
    """VIPeR with a seeded half / half split of the people.

    Args:
        root: The data root (holding ``VIPeR/``) or the ``VIPeR`` folder itself.
        split_seed: Seed of the split.
    """

    config_block = VIPER_CONFIG
    name = "VIPeR"
    layouts = (Layout("VIPeR", ("cam_a", "cam_b")),)
    layout_help = "<root>/VIPeR/\n    cam_a/   000_45.bmp ...\n    cam_b/   000_90.bmp ..."

    @configurable
    def __init__(self, root: str, split_seed: int = 0) -> None:
        if split_seed < 0:
            raise InvalidArgument("split_seed", f"must be >= 0, got {split_seed}")
        self.split_seed = split_seed
        super().__init__(root)

    def _camera(self, folder: str, camid: int) -> dict[int, Record]:
        records = {}
        directory = os.path.join(self.dataset_dir, folder)
        for name in sorted(os.listdir(directory)):
            stem = name.split("_", 1)[0]
            if not stem.isdigit():
                raise DatasetFormatError(f"{os.path.join(directory, name)}: expected 000_45.bmp")
            records[int(stem)] = Record(os.path.join(directory, name), int(stem), camid, self.name)
        return records

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        cam_a, cam_b = self._camera("cam_a", 0), self._camera("cam_b", 1)
        people = sorted(cam_a.keys() & cam_b.keys())
        random.Random(self.split_seed).shuffle(people)
        train_ids, test_ids = sorted(people[: len(people) // 2]), sorted(people[len(people) // 2 :])
        train = [cam[p] for p in train_ids for cam in (cam_a, cam_b)]
        return train, [cam_a[p] for p in test_ids], [cam_b[p] for p in test_ids]
