"""MNIST from its standard IDX files (LeCun et al.), for the ratio-loss paper's toy run.

The four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each also accepted gzipped, with
``.gz``) are looked up under the datasets root in ``MNIST/raw/`` (torchvision's layout),
``MNIST/`` and ``mnist/``.

IDX: a big-endian header (two zero bytes, a type code, the number of dimensions n), n big-endian
uint32 sizes, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MNIST_FILES",
    "MNIST_FOLDERS",
    "IdxFormatError",
    "Mnist",
    "find_mnist",
    "load_mnist",
    "per_class_subset",
    "read_idx",
    "write_idx",
]

# IDX type code -> numpy dtype (big-endian).
IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_FOLDERS = (os.path.join("MNIST", "raw"), "MNIST", "mnist")


class IdxFormatError(ValueError):
    """A file that is not a valid IDX file; the message names it."""


def _read_bytes(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def read_idx(path: str) -> np.ndarray:
    """The array an IDX file holds (``.gz``: gzipped), in native byte order.

    Args:
        path: The file.

    Returns:
        An array of the file's shape and type (uint8 for MNIST's images and labels).

    Raises:
        IdxFormatError: The header is not IDX, the type code is unknown, or the data is not
            exactly as long as the header says.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x-idx2-ubyte")
    >>> write_idx(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    >>> read_idx(path)
    array([[1, 2, 3],
           [4, 5, 6]], dtype=uint8)
    """
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{path}: not an IDX file (it must start with two zero bytes, a type code and the "
            f"number of dimensions; got {data[:4].hex() or 'an empty file'})"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise IdxFormatError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{path}: the header announces shape {tuple(shape)} ({expected} bytes of data) but "
            f"the file holds {len(data) - header} bytes after it"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends with ``.gz``).

    Args:
        path: The file to write.
        array: Of one of the IDX types (uint8, int8, int16, int32, float32, float64).
    """
    kind = np.dtype(array.dtype).newbyteorder(">")
    codes = {np.dtype(v): k for k, v in IDX_TYPES.items()}
    if kind not in codes:
        raise ValueError(f"IDX cannot hold {array.dtype}; use one of uint8, int8, int16, ...")
    payload = (
        bytes([0, 0, codes[kind], array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=kind).tobytes()
    )
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


@dataclass(frozen=True)
class Mnist:
    """MNIST's images (N x 28 x 28 uint8) and labels (N, int64 in 0..9), train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    folder: str


def _file_in(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def find_mnist(root: str) -> tuple[str, dict[str, str]]:
    """The folder under ``root`` holding the four MNIST IDX files, and their paths.

    Raises:
        FileNotFoundError: No folder holds all four; the message names the files expected, the
            folders searched and, for a folder with some of them, those missing.
    """
    folders = [os.path.join(root, sub) for sub in MNIST_FOLDERS]
    for folder in folders:
        found = {key: _file_in(folder, name) for key, name in MNIST_FILES.items()}
        if all(found.values()):
            return folder, {key: str(path) for key, path in found.items()}
        if any(found.values()):
            missing = [MNIST_FILES[k] for k, path in found.items() if path is None]
            raise FileNotFoundError(
                f"MNIST: {folder} lacks {', '.join(missing)} (each may be gzipped, with .gz); "
                f"the four standard IDX files are {', '.join(MNIST_FILES.values())}"
            )
    raise FileNotFoundError(
        f"MNIST not found under {root}: expected the standard IDX files "
        f"{', '.join(MNIST_FILES.values())} (each may be gzipped, with .gz) in one of "
        f"{', '.join(folders)}"
    )


def load_mnist(root: str) -> Mnist:
    """MNIST read from the IDX files under the datasets root ``root`` (see :func:`find_mnist`).

    Raises:
        FileNotFoundError: The files are not there.
        IdxFormatError: A file is not IDX, or images and labels do not fit MNIST's shapes.
    """
    folder, paths = find_mnist(root)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        where = f"{paths[f'{split}_images']} / {paths[f'{split}_labels']}"
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IdxFormatError(
                f"{paths[f'{split}_images']}: expected N x H x W uint8 images, got "
                f"{images.dtype} of shape {images.shape}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise IdxFormatError(
                f"{where}: {images.shape[0]} images but labels of shape {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise IdxFormatError(
                f"{paths[f'{split}_labels']}: labels must be digits 0..9, got values in "
                f"[{labels.min()}, {labels.max()}]"
            )
    return Mnist(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        folder=folder,
    )


def per_class_subset(labels: np.ndarray, per_class: int, classes: Sequence[int]) -> np.ndarray:
    """Indices of the first ``per_class`` samples of each class, in file order.

    Raises:
        ValueError: A class has fewer samples.

    >>> per_class_subset(np.array([1, 0, 1, 1, 0, 0]), 2, classes=[0, 1])
    array([0, 1, 2, 4])
    """
    picked = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(
                f"class {c} has {len(members)} training images, fewer than the {per_class} per "
                f"class asked for"
            )
        picked.append(members[:per_class])
    return np.sort(np.concatenate(picked))
