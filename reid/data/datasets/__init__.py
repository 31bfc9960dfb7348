"""Datasets: the registry and builders first, then every registered dataset."""

from reid.utils.registry import import_submodules

from .build import (  # isort: skip
    DATASET_REGISTRY,
    build_dataset,
    build_train_records,
    resolve_root,
)
from .bases import (
    DatasetCountWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageDataset,
    Record,
)

import_submodules(__name__, __path__)  # every component file registers itself

__all__ = [
    "DATASET_REGISTRY",
    "DatasetCountWarning",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageDataset",
    "Record",
    "build_dataset",
    "build_train_records",
    "resolve_root",
]
