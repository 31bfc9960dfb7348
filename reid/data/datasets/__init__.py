"""Datasets: the registry and builders first, then every registered dataset."""
from .build import DATASET_REGISTRY, build_dataset, build_test_sets, build_train_records, resolve_root  # isort: skip
from . import cuhk03, custom, dukemtmc, market1501, msmt17, synthetic, vehicleid, veri  # noqa: F401  (register)
from .bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError, ImageDataset, Record

__all__ = [
    "DATASET_REGISTRY",
    "DatasetCountWarning",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageDataset",
    "Record",
    "build_dataset",
    "build_test_sets",
    "build_train_records",
    "resolve_root",
]
