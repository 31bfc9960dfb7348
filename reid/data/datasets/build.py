"""The dataset registry and the functions that turn DATASETS.* into records."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, List, Tuple

from yacs.config import CfgNode

from reid.utils.registry import Registry

from .bases import Record
from reid.config.schema import ConfigBlock, Key, declare

if TYPE_CHECKING:
    from .bases import ImageDataset

logger = logging.getLogger(__name__)


DATASETS_CONFIG = declare(
    ConfigBlock(
        "DATASETS",
        "Which datasets train and test, and where they are.",
        {
            "ROOT": Key(
                "",
                (
                    'Root of the datasets; "" = the REID_DATASETS environment variable, else '
                    '"datasets/". Each dataset is looked up as its own folder under the root '
                    "(datasets/README.md) or as the root itself."
                ),
            ),
            "NAMES": Key(
                ["Market1501"],
                (
                    "Registered training datasets; several are combined with distinct identities "
                    "(pids relabelled 0..C-1 in this order, each dataset keeping its own id "
                    "space)."
                ),
            ),
            "TESTS": Key(
                ["Market1501"],
                "Test datasets, each evaluated and reported separately.",
            ),
            "COMBINEALL": Key(
                False,
                (
                    "Add query and gallery of the training datasets to the training set "
                    "(distractors excluded)."
                ),
            ),
        },
    )
)


# Dataset classes (ImageDataset subclasses) by the name DATASETS.NAMES / DATASETS.TESTS use.
DATASET_REGISTRY = Registry("DATASET")

DEFAULT_ROOT = "datasets/"
ROOT_ENV = "REID_DATASETS"


def resolve_root(cfg: CfgNode) -> str:
    """DATASETS.ROOT if set, else the REID_DATASETS environment variable, else ``datasets/`` (absolute)."""
    root = cfg.DATASETS.ROOT or os.environ.get(ROOT_ENV, "") or DEFAULT_ROOT
    return os.path.abspath(os.path.expanduser(root))


def build_dataset(name: str, cfg: CfgNode) -> "ImageDataset":
    """The registered dataset ``name`` read from the data root with its options from ``cfg``; logs its summary."""
    dataset = DATASET_REGISTRY.get(name).from_config(cfg, resolve_root(cfg))
    logger.info("\n%s", dataset.summary())
    return dataset


def _check_unique(names: List[str], key: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{key} lists {', '.join(duplicates)} more than once: {names}")


def build_train_records(cfg: CfgNode) -> Tuple[List[Record], int]:
    """The training records of DATASETS.NAMES with pids relabelled 0..C-1, and C.

    Each dataset keeps its own id space: its pids, sorted, take the next free labels, in the order
    of DATASETS.NAMES, so identities of different datasets never merge. Camera ids are shifted the
    same way (the first dataset's stay as they are). DATASETS.COMBINEALL adds each dataset's query
    and gallery images (distractors excluded).
    """
    names = list(cfg.DATASETS.NAMES)
    if not names:
        raise ValueError("DATASETS.NAMES is empty: name at least one training dataset")
    _check_unique(names, "DATASETS.NAMES")
    records: List[Record] = []
    pid_offset = cam_offset = 0
    for name in names:
        items = build_dataset(name, cfg).training_records(combine_all=cfg.DATASETS.COMBINEALL)
        if not items:
            raise ValueError(f"dataset {name} (in DATASETS.NAMES) has no training images")
        pid_map = {pid: pid_offset + i for i, pid in enumerate(sorted({r.pid for r in items}))}
        records.extend(Record(r.path, pid_map[r.pid], r.camid + cam_offset, r.dataset) for r in items)
        pid_offset += len(pid_map)
        cam_offset += max(r.camid for r in items) + 1
    logger.info(
        "Training set: %d images of %d identities from %s%s",
        len(records),
        pid_offset,
        ", ".join(names),
        " (train + query + gallery: COMBINEALL)" if cfg.DATASETS.COMBINEALL else "",
    )
    return records, pid_offset


def build_test_sets(cfg: CfgNode) -> List["ImageDataset"]:
    """The datasets of DATASETS.TESTS, in order, each to be evaluated and reported on its own."""
    names = list(cfg.DATASETS.TESTS)
    _check_unique(names, "DATASETS.TESTS")
    datasets = []
    for name in names:
        dataset = build_dataset(name, cfg)
        for split in ("query", "gallery"):
            if not getattr(dataset, split):
                raise ValueError(f"test dataset {name} (in DATASETS.TESTS) has an empty {split} split in {dataset.dataset_dir}")
        datasets.append(dataset)
    return datasets
