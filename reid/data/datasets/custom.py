"""A user's own data: a folder in the Market-1501 layout, or a CSV of path, pid, camid, split."""

from __future__ import annotations

import csv
import io
import os
import re

from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, Key, configurable

from .bases import (
    IMAGE_EXTENSIONS,
    SPLITS,
    DatasetFormatError,
    DatasetNotFoundError,
    FolderDataset,
    Record,
)
from .build import DATASET_REGISTRY
from .market1501 import MARKET_SPLIT_DIRS

CUSTOM_CONFIG = ConfigBlock(
    "DATASETS.CUSTOM",
    'The "Custom" dataset: a folder of one\'s own (datasets/README.md).',
    {
        "DIR": Key("custom", "The folder, relative to the data root or absolute."),
        "CSV": Key(
            "",
            '"" = the Market-1501 layout inside DIR; else a CSV file (inside DIR, or absolute) of '
            "rows path,pid,camid,split (path relative to the CSV's folder, camid 0-based, split "
            "train/query/gallery).",
        ),
    },
)


CSV_HEADER = ["path", "pid", "camid", "split"]


@DATASET_REGISTRY.register(name="Custom")
class CustomDataset(FolderDataset):
    """DATASETS.CUSTOM.DIR (relative to the data root, or absolute) read one of two ways.

    - Market layout (DATASETS.CUSTOM.CSV empty): ``bounding_box_train/``, ``query/``,
      ``bounding_box_test/`` with names ``<pid>_c<camera>[anything].<jpg|jpeg|png|bmp>``, e.g.
      ``0007_c2_frame88.jpg``; camera numbers start at 1 (stored 0-based); as in Market-1501,
      pid -1 is junk (dropped) and pid 0 a distractor (gallery only, never trained on).
    - CSV (DATASETS.CUSTOM.CSV = file name inside DIR, or absolute): rows ``path,pid,camid,split``
      with an optional header row; path relative to the CSV's folder or absolute; pid and camid
      non-negative integers used as written (camid 0-based; pid 0 is an ordinary identity);
      split train, query or gallery. UTF-8, with or without a byte-order mark; each image once
      per split, and not both in query and gallery (a query would match itself).

    Args:
        root: The data root.
        folder: The dataset folder, relative to ``root`` or absolute (DATASETS.CUSTOM.DIR).
        csv_file: The CSV file, inside ``folder`` or absolute; "" = the Market layout
            (DATASETS.CUSTOM.CSV).
    """

    config_block = CUSTOM_CONFIG

    name = "Custom"
    split_dirs = MARKET_SPLIT_DIRS
    layout_help = """\
<DATASETS.CUSTOM.DIR>/                 (relative to the data root, or absolute)
    bounding_box_train/   0001_c1_anything.jpg ...   (<pid>_c<camera>..., camera from 1)
    query/                0101_c1_x.jpg ...
    bounding_box_test/    0101_c2_y.jpg, 0000_c1_z.jpg (distractor), -1_c3_w.jpg (junk) ...
  or, with DATASETS.CUSTOM.CSV = "list.csv":
    list.csv              path,pid,camid,split  (e.g. "imgs/a.jpg,7,0,train")"""
    pattern = re.compile(r"^(?P<pid>-1|\d+)_c(?P<cam>\d+).*\.(jpg|jpeg|png|bmp)$", re.IGNORECASE)
    name_example = "0007_c2_anything.jpg (<pid>_c<camera>..., camera numbers from 1)"
    extensions = IMAGE_EXTENSIONS
    junk_pids = frozenset({-1})
    non_identity_pids = frozenset({0})

    @configurable
    def __init__(self, root: str, folder: str = "custom", csv_file: str = "") -> None:
        self.folder = folder
        self.csv_file = csv_file
        if csv_file:
            self.non_identity_pids = frozenset()
        super().__init__(root)

    @classmethod
    def from_config(cls, cfg: CfgNode, root: str) -> ConfigArgs:
        args = ConfigArgs().set("root", root)
        return args.update_from(
            CUSTOM_CONFIG.arguments(cfg, rename={"DIR": "folder", "CSV": "csv_file"})
        )

    @property
    def csv_path(self) -> str:
        """The CSV file: ``csv_file`` inside the dataset folder, or as given if absolute."""
        return os.path.join(self.dataset_dir, os.path.expanduser(self.csv_file))

    def locate(self) -> str:
        """``folder`` under the data root (or absolute); it must exist."""
        folder = os.path.normpath(os.path.join(self.root, os.path.expanduser(self.folder)))
        if not os.path.isdir(folder):
            raise DatasetNotFoundError(
                f"{self.name}: folder not found: {folder} (DATASETS.CUSTOM.DIR); "
                f"{self.expected_layout()}"
            )
        return folder

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        if not self.csv_file:
            return super().load()
        path = self.csv_path
        if not os.path.isfile(path):
            raise DatasetNotFoundError(
                f"{self.name}: CSV file not found: {path} (DATASETS.CUSTOM.CSV); "
                f"{self.expected_layout()}"
            )
        base = os.path.dirname(path)
        splits: dict[str, list[Record]] = {s: [] for s in SPLITS}
        lines: dict[tuple[str, str], int] = {}  # (split, image) -> line
        rows = csv.reader(io.StringIO(self._read_csv_text(path), newline=""))
        for lineno, row in enumerate(rows, start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or (lineno == 1 and [c.lower() for c in cells] == CSV_HEADER):
                continue
            where = f"{path}, line {lineno}"
            if len(cells) != 4:
                raise DatasetFormatError(
                    f"{self.name}: {where} has {len(cells)} fields; expected "
                    f"path,pid,camid,split"
                )
            rel, pid, camid, split = cells
            if not (pid.isdigit() and camid.isdigit()):
                raise DatasetFormatError(
                    f"{self.name}: {where}: pid {pid!r} and camid {camid!r} must be "
                    f"non-negative integers"
                )
            if split not in splits:
                raise DatasetFormatError(
                    f"{self.name}: {where}: split {split!r} must be one of {', '.join(SPLITS)}"
                )
            image = os.path.normpath(os.path.join(base, os.path.expanduser(rel)))
            if not os.path.isfile(image):
                raise DatasetNotFoundError(
                    f"{self.name}: image not found: {image} (listed at {where})"
                )
            if (split, image) in lines:
                raise DatasetFormatError(
                    f"{self.name}: {where} lists {image} in {split} again (first at line "
                    f"{lines[split, image]}); list each image once per split"
                )
            other = {"query": "gallery", "gallery": "query"}.get(split)
            if other is not None and (other, image) in lines:
                raise DatasetFormatError(
                    f"{self.name}: {where} lists {image} as {split}, and line "
                    f"{lines[other, image]} as {other}: a query found in the gallery matches "
                    f"itself and inflates Rank-1 and mAP. List each image in query or in "
                    f"gallery, not both"
                )
            lines[split, image] = lineno
            splits[split].append(Record(image, int(pid), int(camid), self.name))
        train, query, gallery = (sorted(splits[s], key=lambda r: r.path) for s in SPLITS)
        return train, query, gallery

    def _read_csv_text(self, path: str) -> str:
        """The CSV as text: UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8")."""
        with open(path, "rb") as f:
            raw = f.read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            lineno = raw[: e.start].count(b"\n") + 1
            raise DatasetFormatError(
                f"{self.name}: {path}, line {lineno}: not UTF-8 (byte {raw[e.start]:#04x} at "
                f"offset {e.start}; Latin-1 or another legacy encoding?). Save the CSV as UTF-8 "
                f"(in Excel: 'CSV UTF-8'), e.g. iconv -f latin1 -t utf-8 {os.path.basename(path)}"
            ) from None

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        return {}
