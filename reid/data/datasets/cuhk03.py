"""CUHK03 (Li et al., CVPR 2014): the 767/700 protocol (Zhong et al., CVPR 2017), classic splits.

The images ship inside ``cuhk-03.mat`` (MATLAB v7.3 = HDF5). On first use the labeled or detected
images are extracted once to ``images_{labeled,detected}/`` (into a temporary folder renamed into
place, so an interrupted or concurrent run never leaves a half-written folder) and the split is
written as JSON (temporary file + rename); later runs read the JSON and the PNG files only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import cv2
import h5py
import numpy as np
import scipy.io

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.utils.file_io import atomic_write_json

from .bases import DatasetFormatError, DatasetNotFoundError, ImageDataset, Layout, Record
from .build import DATASET_REGISTRY

CUHK03_CONFIG = ConfigBlock(
    "DATASETS.CUHK03",
    "CUHK03: which boxes and which protocol.",
    {
        "LABELED": Key(True, "True = the hand-labeled boxes, False = the detected (DPM) boxes."),
        "CLASSIC_SPLIT": Key(
            False,
            "False = the 767/700 protocol (Zhong et al. 2017); True = the classic 20 random splits "
            "of cuhk-03.mat (1,367 train / 100 test persons; query = gallery = the test images).",
        ),
        "SPLIT_ID": Key(0, "Which classic split (0..19); read only when CLASSIC_SPLIT is True."),
    },
)


RAW_MAT = os.path.join("cuhk03_release", "cuhk-03.mat")
PROTOCOL_MAT = "cuhk03_new_protocol_config_{kind}.mat"
SPLIT_JSON = "reid_split_{protocol}_{kind}.json"
SPLIT_FORMAT = 1
NUM_CLASSIC_SPLITS = 20
# {camera pair}_{person within the pair, 3 digits}_{view 1|2}_{image 1..10, 2 digits}.png
IMAGE_NAME = re.compile(r"^(?P<campair>\d)_(?P<pid>\d{3})_(?P<view>[12])_(?P<idx>\d{2})\.png$")

SplitRows = list[list[Any]]  # [file name, pid, camid] rows as stored in the JSON


def image_name(campair: int, pid: int, slot: int) -> str:
    """File name of the image in ``slot`` (0..9) of person ``pid`` of camera pair ``campair``.

    ``pid`` and ``campair`` are 1-based.

    Slots 0..4 are the first camera of the pair (view 1), 5..9 the second (view 2).
    """
    return f"{campair}_{pid:03d}_{1 if slot < 5 else 2}_{slot + 1:02d}.png"


def _mat_str(value: Any) -> str:
    """A MATLAB string as scipy.io.loadmat returns it inside a cell (nested 1-element arrays)."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected a single string, got an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    return str(value)


def _iter_raw_images(
    mat: Any, kind: str, mat_path: str
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(camera pair, person, slot, H x W x 3 RGB image) of every non-empty ``kind`` cell."""
    if kind not in mat:
        raise DatasetFormatError(
            f"CUHK03: {mat_path} has no '{kind}' entry; it is not the original cuhk-03.mat"
        )
    for campair, pair_ref in enumerate(np.asarray(mat[kind][()]).ravel(), start=1):
        cells = np.asarray(mat[pair_ref][()]).T  # stored slot-major: (10, persons) -> (persons, 10)
        for pid, row in enumerate(cells, start=1):
            for slot, ref in enumerate(row):
                image = np.asarray(mat[ref][()])
                if image.ndim == 3 and image.size > 0:
                    yield campair, pid, slot, image.T  # stored as (3, W, H)


class CUHK03Split:
    """Builds and caches a dataset folder's CUHK03 splits (extraction, protocol files, JSON)."""

    def __init__(self, dataset_dir: str, kind: str) -> None:
        self.dataset_dir = dataset_dir
        self.kind = kind
        self.images_dir = os.path.join(dataset_dir, f"images_{kind}")
        self.raw_mat = os.path.join(dataset_dir, RAW_MAT)

    def extract_images(self) -> None:
        """Write every ``kind`` image of cuhk-03.mat as PNG into images_<kind>/, once."""
        if os.path.isdir(self.images_dir):
            return
        tmp = tempfile.mkdtemp(prefix=f".images_{self.kind}.", dir=self.dataset_dir)
        try:
            try:
                mat = h5py.File(self.raw_mat, "r")
            except OSError as e:
                raise DatasetFormatError(
                    f"CUHK03: cannot read {self.raw_mat} as MATLAB v7.3 (HDF5): {e}"
                ) from e
            with mat:
                for campair, pid, slot, image in _iter_raw_images(mat, self.kind, self.raw_mat):
                    path = os.path.join(tmp, image_name(campair, pid, slot))
                    if not cv2.imwrite(path, np.ascontiguousarray(image[:, :, ::-1])):
                        raise OSError(f"CUHK03: could not write {path}")
            try:
                os.rename(tmp, self.images_dir)
            except OSError:
                if not os.path.isdir(self.images_dir):
                    raise
                shutil.rmtree(tmp)  # another process extracted them first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _camid(self, name: str, source: str) -> int:
        m = IMAGE_NAME.match(name)
        if m is None:
            raise DatasetFormatError(
                f"CUHK03: cannot parse the image name {name!r} in {source}; expected names like "
                f"1_001_1_01.png"
            )
        return int(m.group("view")) - 1

    def new_protocol(self) -> list[dict[str, SplitRows]]:
        """The 767/700 split of cuhk03_new_protocol_config_<kind>.mat (1-based file indices)."""
        path = os.path.join(self.dataset_dir, PROTOCOL_MAT.format(kind=self.kind))
        if not os.path.isfile(path):
            raise DatasetNotFoundError(
                f"CUHK03: protocol file not found: {path} (the 767/700 protocol of Zhong et al., "
                f"from https://github.com/zhunzhong07/person-re-ranking/tree/master/evaluation/"
                f"data/CUHK03); set DATASETS.CUHK03.CLASSIC_SPLIT True for the classic splits "
                f"instead"
            )
        try:
            config = scipy.io.loadmat(path)
        except (ValueError, OSError, NotImplementedError) as e:
            raise DatasetFormatError(f"CUHK03: cannot read {path} as a MATLAB file: {e}") from e
        keys = ("filelist", "labels", "train_idx", "query_idx", "gallery_idx")
        missing = [k for k in keys if k not in config]
        if missing:
            raise DatasetFormatError(
                f"CUHK03: {path} lacks {', '.join(missing)}; expected the keys {', '.join(keys)}"
            )
        names = [_mat_str(v) for v in config["filelist"].ravel()]
        labels = config["labels"].ravel().astype(np.int64)
        if len(labels) != len(names):
            raise DatasetFormatError(
                f"CUHK03: {path} has {len(names)} file names but {len(labels)} labels"
            )
        split: dict[str, SplitRows] = {}
        for subset in ("train", "query", "gallery"):
            indices = config[f"{subset}_idx"].ravel().astype(np.int64) - 1
            bad = indices[(indices < 0) | (indices >= len(names))]
            if bad.size:
                raise DatasetFormatError(
                    f"CUHK03: {path}: {subset}_idx holds {int(bad[0]) + 1}, outside 1..{len(names)}"
                )
            split[subset] = [
                [names[i], int(labels[i]), self._camid(names[i], path)] for i in indices
            ]
        return [split]

    def classic_splits(self) -> list[dict[str, SplitRows]]:
        """The 20 classic splits of cuhk-03.mat's ``testsets``.

        Each has 100 test persons, whose images are both the query and the gallery.

        Person ids are the 1-based rank of (camera pair, person) over all persons, so train and
        test ids never collide.
        """
        persons: dict[tuple[int, int], list[str]] = defaultdict(list)
        for name in sorted(os.listdir(self.images_dir)):
            m = IMAGE_NAME.match(name)
            if m is None:
                raise DatasetFormatError(
                    f"CUHK03: cannot parse the file name {os.path.join(self.images_dir, name)}; "
                    f"expected names like 1_001_1_01.png"
                )
            persons[(int(m.group("campair")), int(m.group("pid")))].append(name)
        order = sorted(persons)
        global_id = {key: i + 1 for i, key in enumerate(order)}
        with h5py.File(self.raw_mat, "r") as mat:
            if "testsets" not in mat:
                raise DatasetFormatError(
                    f"CUHK03: {self.raw_mat} has no 'testsets' entry (needed by the classic splits)"
                )
            testsets = [
                np.asarray(mat[ref][()]).T for ref in np.asarray(mat["testsets"][()]).ravel()
            ]
        splits = []
        for test_pairs in testsets:
            test_keys = {(int(c), int(p)) for c, p in test_pairs}
            unknown = sorted(test_keys - set(order))
            if unknown:
                raise DatasetFormatError(
                    f"CUHK03: {self.raw_mat} testsets name persons without images: {unknown[:5]}"
                )
            train = [
                [n, global_id[k], self._camid(n, self.images_dir)]
                for k in order
                if k not in test_keys
                for n in persons[k]
            ]
            test = [
                [n, global_id[k], self._camid(n, self.images_dir)]
                for k in order
                if k in test_keys
                for n in persons[k]
            ]
            splits.append({"train": train, "query": test, "gallery": test})
        return splits

    def load(self, classic: bool) -> list[dict[str, SplitRows]]:
        """The splits, from the JSON cache or built (and cached) on first use."""
        protocol = "classic" if classic else "new"
        json_path = os.path.join(
            self.dataset_dir, SPLIT_JSON.format(protocol=protocol, kind=self.kind)
        )
        if not os.path.isfile(json_path):
            self.extract_images()
            splits = self.classic_splits() if classic else self.new_protocol()
            atomic_write_json(
                json_path,
                {"format": SPLIT_FORMAT, "protocol": protocol, "kind": self.kind, "splits": splits},
            )
        try:
            with open(json_path, encoding="utf-8") as f:
                data = json.load(f)
            if (
                data["format"] != SPLIT_FORMAT
                or data["protocol"] != protocol
                or data["kind"] != self.kind
            ):
                raise ValueError(
                    f"it holds format {data['format']}, protocol {data['protocol']}, "
                    f"kind {data['kind']}"
                )
            return data["splits"]
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetFormatError(
                f"CUHK03: the split file {json_path} is broken ({e}); delete it to rebuild it"
            ) from e


@DATASET_REGISTRY.register()
class CUHK03(ImageDataset):
    """CUHK03, labeled or detected boxes; the 767/700 protocol or the classic splits.

    camid = view - 1 (each camera pair has two views; 0-based). Pids are the protocol file's labels
    (767/700) or the global person rank (classic); both are disjoint between train and test. The
    classic single-gallery-shot CMC (TEST.CUHK03_CLASSIC) applies to its test split.

    Args:
        root: The data root holding ``cuhk03/``, or that folder itself.
        labeled: The hand-labeled boxes (True) or the detected ones (False).
        classic_split: The classic 20 splits of cuhk-03.mat instead of the 767/700 protocol.
        split_id: Which classic split, 0..19.
    """

    config_block = CUHK03_CONFIG
    single_gallery_shot_cmc = True

    name = "CUHK03"
    layouts = (Layout("cuhk03", (RAW_MAT,)), Layout("CUHK03", (RAW_MAT,)))
    layout_help = """\
<root>/cuhk03/
    cuhk03_release/cuhk-03.mat               (the original release, MATLAB v7.3 / HDF5)
    cuhk03_new_protocol_config_labeled.mat   (767/700 protocol files, needed unless CLASSIC_SPLIT)
    cuhk03_new_protocol_config_detected.mat
  written on first use: images_labeled/ or images_detected/ (1_001_1_01.png ...)
  and reid_split_*.json"""

    @configurable
    def __init__(
        self, root: str, labeled: bool = True, classic_split: bool = False, split_id: int = 0
    ) -> None:
        if classic_split and not 0 <= split_id < NUM_CLASSIC_SPLITS:
            raise InvalidArgument(
                "split_id", f"must be in 0..{NUM_CLASSIC_SPLITS - 1}, got {split_id}"
            )
        self.labeled = labeled
        self.classic_split = classic_split
        self.split_id = split_id
        super().__init__(root)

    @property
    def kind(self) -> str:
        """Which boxes are read: "labeled" or "detected"."""
        return "labeled" if self.labeled else "detected"

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        cache = CUHK03Split(self.dataset_dir, self.kind)
        splits = cache.load(self.classic_split)
        index = self.split_id if self.classic_split else 0
        if index >= len(splits):
            raise ValueError(f"CUHK03: split {index} requested but only {len(splits)} splits exist")
        out = []
        for subset in ("train", "query", "gallery"):
            records = []
            for name, pid, camid in splits[index][subset]:
                path = os.path.join(cache.images_dir, name)
                if not os.path.isfile(path):
                    raise DatasetNotFoundError(
                        f"CUHK03: image {path} (listed in the {subset} split) is missing; delete "
                        f"{cache.images_dir} and the reid_split_*_{self.kind}.json files to "
                        f"extract again"
                    )
                records.append(Record(path, int(pid), int(camid), self.name))
            out.append(sorted(records, key=lambda r: r.path))
        return out[0], out[1], out[2]

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        if self.classic_split:
            return {"train": (1367, None), "query": (100, None), "gallery": (100, None)}
        if self.labeled:
            return {"train": (767, 7368), "query": (700, 1400), "gallery": (700, 5328)}
        return {"train": (767, 7365), "query": (700, 1400), "gallery": (700, 5332)}
