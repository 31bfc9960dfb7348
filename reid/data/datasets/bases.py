"""Records, the dataset base class and the helpers every dataset shares.

Conventions for all datasets:

- ``pid`` is the identity as the dataset writes it (train pids are relabelled to 0..C-1 only by
  :func:`reid.data.datasets.build.build_train_records`); ``camid`` is 0-based (camera ``c1`` in a
  file name is camid 0).
- File lists are sorted, so the records are the same on every file system.
- A dataset is found under the data root either as its own folder (``<root>/Market-1501-v15.09.15``)
  or as the root itself (``DATASETS.ROOT`` pointing at the dataset folder).
"""

from __future__ import annotations

import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, configurable

SPLITS: tuple[str, ...] = ("train", "query", "gallery")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root, dataset folder, split folder or list file that is not there."""


class DatasetFormatError(ValueError):
    """A file name, list line or annotation that does not follow the dataset's format."""


class DatasetCountWarning(UserWarning):
    """Counts that differ from the official ones, or an empty split."""


@dataclass(frozen=True)
class Record:
    """One image: where it is, whose it is, which camera took it, and which dataset it is from."""

    path: str
    pid: int
    camid: int
    dataset: str


@dataclass(frozen=True)
class Layout:
    """One accepted folder layout: the folder name under the root and the paths it must contain."""

    folder: str
    required: tuple[str, ...]


def sorted_images(folder: str, extensions: Sequence[str] = (".jpg",)) -> list[str]:
    """Sorted file names in ``folder`` with one of ``extensions`` (case-insensitive)."""
    exts = tuple(e.lower() for e in extensions)
    return sorted(
        n
        for n in os.listdir(folder)
        if n.lower().endswith(exts) and os.path.isfile(os.path.join(folder, n))
    )


def read_list_file(path: str) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a list file as (1-based line number, whitespace-separated fields)."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"list file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [(i, line.split()) for i, line in enumerate(f, start=1) if line.strip()]


def _count_text(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


class ImageDataset(ABC):
    """Base of every dataset: ``train``, ``query`` and ``gallery`` lists of :class:`Record`.

    Subclasses set ``name`` (the registered name), ``layouts`` (accepted folder layouts, the first
    being the canonical one shown in errors), ``layout_help`` (the expected tree, shown in errors)
    and implement :meth:`load`. ``official_counts`` gives (ids, images) per split as published;
    ``None`` for a value skips its check. A dataset with options takes them as constructor
    arguments after ``root`` and reads them in ``from_config`` from its ``config_block``.

    Class attributes:
        config_block: The keys of the dataset's options (None: it has none).
        single_gallery_shot_cmc: Whether the classic single-gallery-shot CMC
            (TEST.CUHK03_CLASSIC) applies to the dataset's test split; the evaluator reads this
            flag of the dataset class instead of recognising the dataset by its name.

    Args:
        root: The data root holding the dataset's folder, or the dataset folder itself.
    """

    config_block: ClassVar[ConfigBlock | None] = None
    single_gallery_shot_cmc: ClassVar[bool] = False
    name: ClassVar[str] = ""
    layouts: ClassVar[tuple[Layout, ...]] = ()
    layout_help: ClassVar[str] = ""
    # Pids that are not identities (Market's 0000 distractors): gallery-only negatives, never
    # trained on.
    non_identity_pids: frozenset[int] = frozenset()

    @configurable
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.dataset_dir = self.locate()
        train, query, gallery = self.load()
        self.train: list[Record] = train
        self.query: list[Record] = query
        self.gallery: list[Record] = gallery
        self.check_counts()

    @classmethod
    def from_config(cls, cfg: CfgNode, root: str) -> ConfigArgs:
        """Constructor arguments: ``root`` and, for a dataset with options, its block's keys.

        Args:
            cfg: The whole config.
            root: The data root (see :func:`reid.data.datasets.build.resolve_root`).
        """
        args = ConfigArgs().set("root", root)
        if cls.config_block is not None:
            args.update_from(cls.config_block.arguments(cfg))
        return args

    @abstractmethod
    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        """Parse the dataset folder into (train, query, gallery)."""

    def official_counts(self) -> dict[str, tuple[int | None, int | None]]:
        """Published (ids, images) per split; empty when there are none to compare against."""
        return {}

    # ---- locating the folder ------------------------------------------------------------------
    def expected_layout(self) -> str:
        """The expected folder tree, for error messages ("" when the class gives none)."""
        return f"expected layout:\n{self.layout_help.rstrip()}" if self.layout_help else ""

    def _missing(self, folder: str, layout: Layout) -> list[str]:
        return [r for r in layout.required if not os.path.exists(os.path.join(folder, r))]

    def locate(self) -> str:
        """The dataset folder: ``<root>/<layout folder>`` or the root itself, whichever holds a
        layout first; otherwise an error saying what is missing where."""
        candidates = [
            (os.path.normpath(os.path.join(self.root, lay.folder)), lay) for lay in self.layouts
        ]
        candidates += [(self.root, lay) for lay in self.layouts]
        for folder, layout in candidates:
            if not self._missing(folder, layout):
                return folder
        if not os.path.isdir(self.root):
            raise DatasetNotFoundError(
                f"{self.name}: the data root {self.root} does not exist. Set DATASETS.ROOT or the "
                f"REID_DATASETS environment variable to the folder that holds the datasets; "
                f"{self.expected_layout()}"
            )
        for i, (folder, layout) in enumerate(candidates):
            missing = self._missing(folder, layout)
            named_folder = i < len(self.layouts) and folder != self.root
            if os.path.isdir(folder) and (named_folder or len(missing) < len(layout.required)):
                listed = ", ".join(os.path.join(folder, m) for m in missing)
                raise DatasetNotFoundError(
                    f"{self.name}: {folder} is incomplete, missing {listed}; "
                    f"{self.expected_layout()}"
                )
        looked = " or ".join(os.path.join(self.root, lay.folder) for lay in self.layouts)
        raise DatasetNotFoundError(
            f"{self.name}: dataset folder not found: looked for {looked} (or the layout directly "
            f"in {self.root}); {self.expected_layout()}"
        )

    # ---- checks and summary -------------------------------------------------------------------
    def splits(self) -> dict[str, list[Record]]:
        """Split name -> records, in the order train, query, gallery."""
        return {"train": self.train, "query": self.query, "gallery": self.gallery}

    @staticmethod
    def count(records: Iterable[Record]) -> tuple[int, int, int]:
        """(ids, images, cameras) of a list of records."""
        records = list(records)
        return len({r.pid for r in records}), len(records), len({r.camid for r in records})

    def check_counts(self) -> None:
        """Warn about empty splits and about counts that differ from the official ones."""
        for split, records in self.splits().items():
            if not records:
                warnings.warn(
                    f"{self.name} ({self.dataset_dir}): the {split} split is empty",
                    DatasetCountWarning,
                    stacklevel=3,
                )
        official = self.official_counts()
        differences = []
        for split, (ids, images) in official.items():
            got_ids, got_images, _ = self.count(self.splits()[split])
            if (ids is not None and ids != got_ids) or (
                images is not None and images != got_images
            ):
                want = f"{_count_text(ids)} ids / {_count_text(images)} images"
                differences.append(
                    f"{split} has {got_ids:,} ids / {got_images:,} images (official: {want})"
                )
        if differences:
            warnings.warn(
                f"{self.name} ({self.dataset_dir}): counts differ from the official ones: "
                f"{'; '.join(differences)}. The copy may be incomplete or a different release.",
                DatasetCountWarning,
                stacklevel=3,
            )

    def summary(self) -> str:
        """A table of ids / images / cameras per split (the trainer logs it at start)."""
        rows = [(split, *self.count(records)) for split, records in self.splits().items()]
        header = ("subset", "# ids", "# images", "# cameras")
        widths = [max(len(header[0]), *(len(r[0]) for r in rows))]
        widths += [max(len(header[i]), *(len(f"{r[i]:,}") for r in rows)) for i in (1, 2, 3)]

        def line(cells: Sequence[str]) -> str:
            first = cells[0].ljust(widths[0])
            return (
                "| "
                + " | ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])
                + " |"
            )

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        body = [line([r[0]] + [f"{v:,}" for v in r[1:]]) for r in rows]
        return "\n".join(
            [f"=> {self.name} loaded from {self.dataset_dir}", line(header), rule] + body
        )

    def training_records(self, combine_all: bool = False) -> list[Record]:
        """The train split; with ``combine_all`` (COMBINEALL) also the query and gallery images,
        without non-identities, each path once."""
        records = list(self.train)
        if combine_all:
            seen = {r.path for r in records}
            for r in list(self.query) + list(self.gallery):
                if r.pid not in self.non_identity_pids and r.path not in seen:
                    seen.add(r.path)
                    records.append(r)
        return records


class FolderDataset(ImageDataset):
    """A dataset whose splits are folders of images with pid and camera in the file name.

    ``pattern`` must have named groups ``pid`` and ``cam``; cameras are checked against
    ``camera_range`` (1-based, inclusive; ``None`` for no upper bound) and stored 0-based.
    ``junk_pids`` are dropped everywhere; ``non_identity_pids`` (distractors) are kept in the
    gallery only.
    """

    split_dirs: ClassVar[dict[str, str]] = {}
    pattern: ClassVar[re.Pattern[str]]
    name_example: ClassVar[str] = ""
    camera_range: tuple[int, int | None] = (1, None)
    junk_pids: ClassVar[frozenset[int]] = frozenset()
    extensions: ClassVar[tuple[str, ...]] = (".jpg",)

    def parse_name(self, folder: str, fname: str) -> tuple[int, int]:
        """(pid, 1-based camera) of a file name; an error naming the file if it does not parse."""
        m = self.pattern.match(fname)
        if m is None:
            raise DatasetFormatError(
                f"{self.name}: cannot parse the file name {os.path.join(folder, fname)}; expected "
                f"names like {self.name_example}"
            )
        pid, cam = int(m.group("pid")), int(m.group("cam"))
        low, high = self.camera_range
        if cam < low or (high is not None and cam > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise DatasetFormatError(
                f"{self.name}: camera {cam} of {os.path.join(folder, fname)} is outside {bound}"
            )
        return pid, cam

    def parse_split(self, split: str) -> list[Record]:
        """The records of one split's folder, junk dropped, distractors in the gallery only."""
        folder = os.path.join(self.dataset_dir, self.split_dirs[split])
        if not os.path.isdir(folder):
            raise DatasetNotFoundError(
                f"{self.name}: split folder not found: {folder}; {self.expected_layout()}"
            )
        records = []
        for fname in sorted_images(folder, self.extensions):
            pid, cam = self.parse_name(folder, fname)
            if pid in self.junk_pids or (pid in self.non_identity_pids and split != "gallery"):
                continue
            records.append(Record(os.path.join(folder, fname), pid, cam - 1, self.name))
        return records

    def load(self) -> tuple[list[Record], list[Record], list[Record]]:
        train, query, gallery = (self.parse_split(s) for s in SPLITS)
        return train, query, gallery
