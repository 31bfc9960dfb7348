"""MNIST's IDX files: exact parsing of hand-written bytes, the writer, the folder lookup and the
errors that name the file or the expected files."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from reid.data.mnist import (
    MNIST_FILES,
    IdxFormatError,
    find_mnist,
    load_mnist,
    per_class_subset,
    read_idx,
    write_idx,
)


def _raw(path: Path, payload: bytes, gz: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return str(path)


def test_reads_hand_written_ubyte_images_exactly(tmp_path: Path) -> None:
    # Two 2 x 3 "images": magic 0x00000803, dims 2, 2, 3 (big-endian), then the bytes row-major.
    payload = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 2, 3) + bytes(range(250, 256)) * 2
    array = read_idx(_raw(tmp_path / "x-idx3-ubyte", payload))
    assert array.dtype == np.uint8 and array.shape == (2, 2, 3)
    assert array.tolist() == [[[250, 251, 252], [253, 254, 255]]] * 2
    gz = read_idx(_raw(tmp_path / "x-idx3-ubyte.gz", payload, gz=True))
    assert np.array_equal(gz, array)


def test_reads_big_endian_multibyte_types(tmp_path: Path) -> None:
    shorts = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 3) + bytes([0, 1, 0xFF, 0xFE, 1, 0x2C])
    assert read_idx(_raw(tmp_path / "s", shorts)).tolist() == [1, -2, 300]
    floats = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2) + struct.pack(">2f", 1.5, -0.25)
    array = read_idx(_raw(tmp_path / "f", floats))
    assert array.dtype == np.float32 and array.tolist() == [1.5, -0.25]
    assert array.dtype.byteorder in ("=", "<", "|")  # native order for the caller


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a-idx", "a-idx.gz"])
def test_write_then_read_round_trips(tmp_path: Path, dtype: type, name: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 20).astype(dtype)
    path = str(tmp_path / name)
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)
    if not name.endswith(".gz"):
        codes = {
            np.uint8: 8,
            np.int8: 9,
            np.int16: 11,
            np.int32: 12,
            np.float32: 13,
            np.float64: 14,
        }
        data = Path(path).read_bytes()
        assert data[:4] == bytes([0, 0, codes[dtype], 3])
        assert struct.unpack(">3I", data[4:16]) == (2, 3, 4)
        assert data[16:] == array.astype(np.dtype(dtype).newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"", "not an IDX file .*an empty file"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 0]), "not an IDX file .*01000801"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 0]), "unknown IDX type code 0x07"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), r"truncated header \(8 bytes, 3 dimensions\)"),
        (
            bytes([0, 0, 8, 2]) + struct.pack(">2I", 2, 2) + bytes(3),
            r"the header announces shape \(2, 2\) \(4 bytes of data\) but the file holds 3 bytes",
        ),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, payload: bytes, message: str) -> None:
    path = _raw(tmp_path / "bad-idx", payload)
    with pytest.raises(IdxFormatError, match=f"^{path}: {message}"):
        read_idx(path)


def write_mnist(
    folder: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    gz: bool = False,
) -> None:
    suffix = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in (
        ("train_images", train[0]),
        ("train_labels", train[1]),
        ("test_images", test[0]),
        ("test_labels", test[1]),
    ):
        write_idx(str(folder / (MNIST_FILES[key] + suffix)), array)


def _digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


@pytest.mark.parametrize("sub", [os.path.join("MNIST", "raw"), "MNIST", "mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_load_finds_the_standard_files(tmp_path: Path, sub: str, gz: bool) -> None:
    train, test = _digits(30), _digits(12, seed=1)
    write_mnist(tmp_path / sub, train, test, gz=gz)
    mnist = load_mnist(str(tmp_path))
    assert mnist.folder == str(tmp_path / sub)
    assert np.array_equal(mnist.train_images, train[0]) and mnist.train_labels.dtype == np.int64
    assert mnist.train_labels.tolist() == train[1].tolist()
    assert np.array_equal(mnist.test_images, test[0]) and mnist.test_labels.tolist()[:3] == [
        0,
        1,
        2,
    ]


def test_missing_files_name_the_expected_files_and_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"MNIST not found under {tmp_path}: expected the standard IDX files")
    for name in MNIST_FILES.values():
        assert name in message
    for sub in ("MNIST/raw", "MNIST", "mnist"):
        assert str(tmp_path / sub) in message
    write_mnist(tmp_path / "MNIST", _digits(10), _digits(10))
    os.remove(tmp_path / "MNIST" / "t10k-labels-idx1-ubyte")
    with pytest.raises(
        FileNotFoundError, match=f"^MNIST: {tmp_path / 'MNIST'} lacks t10k-labels-idx1-ubyte "
    ):
        find_mnist(str(tmp_path))


def test_inconsistent_files_are_errors(tmp_path: Path) -> None:
    images, labels = _digits(10)
    write_mnist(tmp_path / "MNIST", (images, labels[:9]), _digits(10))
    with pytest.raises(IdxFormatError, match="10 images but labels of shape \\(9,\\)"):
        load_mnist(str(tmp_path))
    write_mnist(tmp_path / "MNIST", (images, labels + 1), _digits(10))
    with pytest.raises(
        IdxFormatError, match=r"labels must be digits 0..9, got values in \[1, 10\]"
    ):
        load_mnist(str(tmp_path))
    write_mnist(tmp_path / "MNIST", (images.astype(np.int16), labels), _digits(10))
    with pytest.raises(IdxFormatError, match="expected N x H x W uint8 images, got int16"):
        load_mnist(str(tmp_path))


def test_per_class_subset_takes_the_first_images_of_each_class() -> None:
    labels = np.array([3, 1, 3, 0, 1, 3, 0, 1, 0])
    assert per_class_subset(labels, 2, [0, 1, 3]).tolist() == [0, 1, 2, 3, 4, 6]
    assert per_class_subset(labels, 3, [0, 1, 3]).tolist() == list(range(9))
    with pytest.raises(ValueError, match="class 2 has 0 training images, fewer than the 2 per"):
        per_class_subset(labels, 2, range(4))
