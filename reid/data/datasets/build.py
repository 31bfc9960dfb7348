"""The dataset registry and the functions that turn DATASETS.* into datasets and records."""

from __future__ import annotations

import logging
import os
from typing import Any

from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.utils.registry import Registry

from .bases import ImageDataset, Record

logger = logging.getLogger(__name__)


DATASETS_CONFIG = declare(
    ConfigBlock(
        "DATASETS",
        "Which datasets train and test, and where they are.",
        {
            "ROOT": Key(
                "",
                'Root of the datasets; "" = the REID_DATASETS environment variable, else '
                '"datasets/". Each dataset is looked up as its own folder under the root '
                "(datasets/README.md) or as the root itself.",
            ),
            "NAMES": Key(
                ["Market1501"],
                "Registered training datasets; several are combined with distinct identities "
                "(pids relabelled 0..C-1 in this order, each dataset keeping its own id space).",
            ),
            "TESTS": Key(["Market1501"], "Test datasets, each evaluated and reported separately."),
            "COMBINEALL": Key(
                False,
                "Add query and gallery of the training datasets to the training set "
                "(distractors excluded).",
            ),
        },
    )
)


def check_dataset_class(obj: Any) -> None:
    """The DATASET registry's contract: an :class:`ImageDataset` subclass with its ``name``."""
    if not (isinstance(obj, type) and issubclass(obj, ImageDataset)):
        raise TypeError(f"a registered dataset must be an ImageDataset subclass, got {obj!r}")
    if not obj.name:
        raise TypeError(f"dataset {obj.__name__} must set name, the name it is registered under")


DATASET_REGISTRY = Registry("DATASET", contract=check_dataset_class)
DATASET_REGISTRY.__doc__ = """Dataset classes by the name DATASETS.NAMES / DATASETS.TESTS use.

A dataset is an :class:`~reid.data.datasets.bases.ImageDataset`, built with ``cls(cfg, root)``
through its ``from_config`` (its options come from its ``config_block``) or with plain arguments.
"""

DEFAULT_ROOT = "datasets/"
ROOT_ENV = "REID_DATASETS"


def resolve_root(cfg: CfgNode) -> str:
    """The data root, absolute: DATASETS.ROOT if set, else $REID_DATASETS, else ``datasets/``."""
    root = cfg.DATASETS.ROOT or os.environ.get(ROOT_ENV, "") or DEFAULT_ROOT
    return os.path.abspath(os.path.expanduser(root))


def build_dataset(name: str, cfg: CfgNode) -> ImageDataset:
    """The registered dataset ``name``, read from the data root with its options from ``cfg``.

    Logs the dataset's summary table.

    Args:
        name: A registered dataset name (an entry of DATASETS.NAMES or DATASETS.TESTS).
        cfg: The whole config.
    """
    dataset: ImageDataset = DATASET_REGISTRY.get(name)(cfg, resolve_root(cfg))
    logger.info("\n%s", dataset.summary())
    return dataset


def _check_unique(names: list[str], key: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{key} lists {', '.join(duplicates)} more than once: {names}")


def build_train_records(cfg: CfgNode) -> tuple[list[Record], int]:
    """The training records of DATASETS.NAMES with pids relabelled 0..C-1, and C.

    Each dataset keeps its own id space: its pids, sorted, take the next free labels, in the order
    of DATASETS.NAMES, so identities of different datasets never merge. Camera ids are shifted the
    same way (the first dataset's stay as they are). DATASETS.COMBINEALL adds each dataset's query
    and gallery images (distractors excluded).

    Args:
        cfg: The whole config.

    Returns:
        The records, in the order of DATASETS.NAMES, and the number of identities C.
    """
    names = list(cfg.DATASETS.NAMES)
    if not names:
        raise ConfigError("DATASETS.NAMES is empty: name at least one training dataset")
    _check_unique(names, "DATASETS.NAMES")
    records: list[Record] = []
    pid_offset = cam_offset = 0
    for name in names:
        items = build_dataset(name, cfg).training_records(combine_all=cfg.DATASETS.COMBINEALL)
        if not items:
            raise ValueError(f"dataset {name} (in DATASETS.NAMES) has no training images")
        pid_map = {pid: pid_offset + i for i, pid in enumerate(sorted({r.pid for r in items}))}
        records.extend(
            Record(r.path, pid_map[r.pid], r.camid + cam_offset, r.dataset) for r in items
        )
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
