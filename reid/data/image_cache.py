"""Training images decoded once: uint8 at the pipeline's resize size, in a memory-mapped file.

:func:`open_image_cache` returns the cache of a list of image files, building it first (in
parallel, with a progress bar) when it is missing or stale. A cache is named by its images (their
paths, in order) and its resize (size, interpolation, antialiasing); it is rebuilt when any image
file changed (size or modification time), so a replaced image never trains from its old pixels.
The pixels are exactly the per-image pipeline's after its resize: the same decoding and the same
``torchvision`` resize.

Files: ``images_<H>x<W>_<key>.u8`` (N x 3 x H x W uint8, C order) and ``.json`` (what it holds);
the data file is written under a temporary name and renamed when complete, then the description.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from reid.utils.file_io import atomic_write_json

from .batch_augment import CacheResize

__all__ = ["DecodedImageCache", "open_image_cache"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1


class DecodedImageCache:
    """N x 3 x H x W uint8 images in a memory-mapped file (read-only).

    Args:
        path: The data file.
        count: N.
        size: (H, W).
    """

    def __init__(self, path: str, count: int, size: tuple[int, int]) -> None:
        self.path = path
        self.size = size
        self.images = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, 3, *size))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def gather(self, indices: Sequence[int], out: torch.Tensor | None = None) -> torch.Tensor:
        """The images at ``indices`` as a B x 3 x H x W uint8 tensor (into ``out`` if given, e.g.
        a pinned buffer)."""
        index = np.asarray(indices, dtype=np.int64)
        if out is None:
            out = torch.empty((len(index), 3, *self.size), dtype=torch.uint8)
        np.take(self.images, index, axis=0, out=out.numpy(), mode="clip")
        return out


class _Decode(Dataset):
    """Image i, decoded and resized as the per-image pipeline does."""

    def __init__(self, paths: Sequence[str], resize: v2.Resize) -> None:
        self.paths = list(paths)
        self.resize = resize
        self.to_image = v2.ToImage()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from .build import read_image  # the loaders' reader, with its error naming the file

        image = self.resize(self.to_image(read_image(self.paths[index])))
        return image.as_subclass(torch.Tensor)


def _fingerprint(paths: Sequence[str]) -> str:
    """A digest of every file's path, size and modification time."""
    digest = hashlib.sha1()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as e:
            raise OSError(f"cannot read image {path}: {e}") from e
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _describe(paths: Sequence[str], resize: CacheResize) -> dict[str, Any]:
    r = resize.transform
    return {
        "version": CACHE_VERSION,
        "size": list(resize.size),
        "interpolation": str(getattr(r.interpolation, "value", r.interpolation)),
        "antialias": bool(r.antialias),
        "count": len(paths),
    }


def open_image_cache(
    paths: Sequence[str], resize: CacheResize, cache_dir: str, num_workers: int = 0
) -> DecodedImageCache:
    """The cache of ``paths`` at ``resize``, built first if missing or stale.

    Args:
        paths: The image files, in index order.
        resize: The per-image pipeline's resize (:meth:`BatchAugment.from_transform`).
        cache_dir: The folder of the cache files (created if needed).
        num_workers: Decoding processes while building; 0 = in this process.

    Raises:
        OSError: An image cannot be read (named), or the folder cannot be written.
    """
    description = _describe(paths, resize)
    key_source = json.dumps({**description, "paths": list(paths)}, sort_keys=True)
    key = hashlib.sha1(key_source.encode()).hexdigest()[:16]
    h, w = resize.size
    base = os.path.join(cache_dir, f"images_{h}x{w}_{key}")
    data_path, meta_path = base + ".u8", base + ".json"
    fingerprint = _fingerprint(paths)
    stale = _stale_reason(data_path, meta_path, description, fingerprint)
    if stale is not None:
        logger.info("Decoded-image cache %s: %s; building it", data_path, stale)
        _build(paths, resize, data_path, num_workers)
        atomic_write_json(meta_path, {**description, "fingerprint": fingerprint})
    return DecodedImageCache(data_path, len(paths), (h, w))


def _stale_reason(
    data_path: str, meta_path: str, description: dict[str, Any], fingerprint: str
) -> str | None:
    """Why the cache cannot be used (None: it can)."""
    if not os.path.exists(meta_path) or not os.path.exists(data_path):
        return "not built yet"
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        return f"its description is unreadable ({e})"
    if any(meta.get(k) != v for k, v in description.items()):
        return "it was built by another version or with other settings"
    if meta.get("fingerprint") != fingerprint:
        return "image files changed since it was built"
    h, w = description["size"]
    if os.path.getsize(data_path) != description["count"] * 3 * h * w:
        return "its data file has the wrong size"
    return None


def _build(paths: Sequence[str], resize: CacheResize, data_path: str, num_workers: int) -> None:
    from tqdm import tqdm

    os.makedirs(os.path.dirname(os.path.abspath(data_path)), exist_ok=True)
    h, w = resize.size
    tmp = f"{data_path}.tmp{os.getpid()}"
    start = time.perf_counter()
    try:
        images = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(paths), 3, h, w))
        loader = DataLoader(
            _Decode(paths, resize.transform), batch_size=64, num_workers=num_workers
        )
        done = 0
        with tqdm(total=len(paths), desc="decoding images once", unit="img", disable=None) as bar:
            for batch in loader:
                if tuple(batch.shape[1:]) != (3, h, w):
                    raise ValueError(f"the resize gave {tuple(batch.shape[1:])}, not (3, {h}, {w})")
                images[done : done + len(batch)] = batch.numpy()
                done += len(batch)
                bar.update(len(batch))
        images.flush()
        del images
        os.replace(tmp, data_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    logger.info(
        "Decoded %d images into %s (%.1f GB) in %.1f s",
        len(paths),
        data_path,
        len(paths) * 3 * h * w / 1e9,
        time.perf_counter() - start,
    )
