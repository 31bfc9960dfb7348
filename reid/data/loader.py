"""The training loader: batches in the sampler's order, on the model's device, prepared ahead.

:class:`TrainLoader` wraps one of two batch sources:

- per image (:class:`PerImageBatches`): a torch ``DataLoader`` whose workers decode and augment
  each image (:class:`reid.data.build.ReidDataset`);
- batched (:class:`CachedBatches`): images decoded once into a memory-mapped cache
  (:mod:`reid.data.image_cache`), gathered a batch at a time and augmented as a whole batch on
  the model's device (:mod:`reid.data.batch_augment`).

Either way a background thread can prepare the next batches (``prefetch``): fetch, copy to the
device without blocking (pinned memory, a side CUDA stream) and, for the batched source,
augment, while the model computes the current step.

Randomness: every epoch, ``iter()`` draws one seed from torch's global generator (which the
trainer reseeds from (seed, epoch)). The per-image source seeds each image's transform from it and
the image's position in the epoch, so augmentations depend neither on the number of workers nor
on whether they persist between epochs; the batched source seeds its generator on the device with
it. Either way a run resumed at an epoch boundary draws what an uninterrupted one draws.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler

from reid.structures import BatchKeys

from .batch_augment import BatchAugment
from .datasets.bases import Record
from .image_cache import DecodedImageCache

__all__ = ["CachedBatches", "PerImageBatches", "SeededSampler", "TrainLoader", "to_device"]

Batch = dict[str, Any]
_SEED_MASK = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def item_seed(epoch_seed: int, position: int) -> int:
    """The seed of the image at ``position`` of an epoch (a fixed mix of the two numbers)."""
    return (epoch_seed + (position + 1) * _GOLDEN) & _SEED_MASK


class SeededSampler(Sampler[tuple[int, int]]):
    """The training sampler's indices, each with its augmentation seed: ``(index, seed)``.

    Args:
        sampler: The training sampler (its epoch is set by the trainer).
    """

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler
        self.epoch_seed = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seed = self.epoch_seed
        for position, index in enumerate(self.sampler):
            yield int(index), item_seed(seed, position)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch's tensors on ``device`` (copies from pinned memory do not block)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


class PerImageBatches:
    """Batches of a ``DataLoader`` over a ``ReidDataset`` with a :class:`SeededSampler`.

    Args:
        loader: The loader (``loader.sampler`` is the :class:`SeededSampler`).
    """

    def __init__(self, loader: DataLoader) -> None:
        if not isinstance(loader.sampler, SeededSampler):
            raise TypeError("PerImageBatches needs a DataLoader whose sampler is a SeededSampler")
        self.loader = loader
        self.seeded = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch_seed: int) -> Iterator[Batch]:
        """This epoch's batches on the host, each image augmented by its own seed."""
        self.seeded.epoch_seed = epoch_seed
        return iter(self.loader)

    def prepare(self, batch: Batch, device: torch.device) -> Batch:
        return to_device(batch, device)

    def start_epoch(self, epoch_seed: int, device: torch.device) -> None:
        """Nothing to seed on the device (the workers seed each image)."""


class CachedBatches:
    """Batches gathered from a decoded-image cache and augmented on the device as a whole.

    Args:
        cache: The decoded images, indexed as ``records``.
        records: The training records (labels, cameras, paths).
        sampler: The training sampler.
        batch_size: Images per batch (the last partial batch is dropped).
        augment: The batched augmentation.
        pin_memory: Gather into pinned host memory (for asynchronous copies to CUDA).
    """

    def __init__(
        self,
        cache: DecodedImageCache,
        records: Sequence[Record],
        sampler: Sampler[int],
        batch_size: int,
        augment: BatchAugment,
        pin_memory: bool = False,
    ) -> None:
        if len(cache) != len(records):
            raise ValueError(f"the cache holds {len(cache)} images for {len(records)} records")
        self.cache = cache
        self.records = list(records)
        self.batch_sampler = BatchSampler(sampler, batch_size, drop_last=True)
        self.augment = augment
        self.pin_memory = pin_memory
        self._targets = torch.tensor([r.pid for r in self.records], dtype=torch.int64)
        self._camids = torch.tensor([r.camid for r in self.records], dtype=torch.int64)
        self._generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def batches(self, epoch_seed: int) -> Iterator[Batch]:
        for indices in self.batch_sampler:
            index = torch.as_tensor(indices, dtype=torch.int64)
            shape = (len(indices), 3, *self.cache.size)
            out = torch.empty(shape, dtype=torch.uint8, pin_memory=self.pin_memory)
            yield {
                BatchKeys.IMAGES: self.cache.gather(indices, out=out),
                BatchKeys.TARGETS: self._targets[index],
                BatchKeys.CAMIDS: self._camids[index],
                BatchKeys.PATHS: [self.records[i].path for i in indices],
            }

    def start_epoch(self, epoch_seed: int, device: torch.device) -> None:
        """Seed the augmentation's generator on ``device``."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        self._generator.manual_seed(epoch_seed)

    def prepare(self, batch: Batch, device: torch.device) -> Batch:
        assert self._generator is not None, "start_epoch seeds the generator first"
        batch = to_device(batch, device)
        batch[BatchKeys.IMAGES] = self.augment(batch[BatchKeys.IMAGES], self._generator)
        return batch


Source = PerImageBatches | CachedBatches
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Prefetcher:
    """Prepares up to ``depth`` batches ahead in a background thread.

    On CUDA the thread copies and augments on its own stream; each batch carries an event the
    consumer's stream waits for, and its tensors are recorded on the consumer's stream so their
    memory is not reused too early.
    """

    def __init__(
        self,
        batches: Iterator[Batch],
        prepare: Callable[[Batch], Batch],
        device: torch.device,
        depth: int,
    ) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._device = device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._thread = threading.Thread(
            target=self._run, args=(batches, prepare), name="reid-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, batches: Iterator[Batch], prepare: Callable[[Batch], Batch]) -> None:
        try:
            for batch in batches:
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        batch = prepare(batch)
                        event = torch.cuda.Event()
                        event.record(self._stream)
                else:
                    batch, event = prepare(batch), None
                if not self._put((batch, event)):
                    return
            self._put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(_Failure(e))

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is _END:
            self._queue.put(_END)  # later calls stop too
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        batch, event = item
        if event is not None:
            current = torch.cuda.current_stream(self._device)
            current.wait_event(event)
            for value in batch.values():
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    value.record_stream(current)
        return batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _Inline:
    """The same preparation without a thread, on the current stream."""

    def __init__(self, batches: Iterator[Batch], prepare: Callable[[Batch], Batch]) -> None:
        self._batches = batches
        self._prepare = prepare

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return self._prepare(next(self._batches))

    def close(self) -> None:
        """Nothing runs in the background."""


class TrainLoader:
    """Training batches of one process, on ``device``, prepared ahead when ``prefetch`` > 0.

    Args:
        source: Where batches come from (:class:`PerImageBatches` or :class:`CachedBatches`).
        sampler: The training sampler (the trainer sets its epoch before ``iter()``).
        device: Where the batches go (the model's device).
        prefetch: Batches a background thread prepares ahead; 0 = no thread.
    """

    def __init__(
        self, source: Source, sampler: Sampler[int], device: torch.device, prefetch: int = 2
    ) -> None:
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.source = source
        self.sampler = sampler
        self.device = torch.device(device)
        self.prefetch = prefetch
        self._current: _Prefetcher | _Inline | None = None

    @property
    def batch_size(self) -> int:
        return int(getattr(self.sampler, "batch_size", 0))

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[Batch]:
        self.close()
        epoch_seed = int(torch.randint(0, 2**62, (1,)).item())
        self.source.start_epoch(epoch_seed, self.device)
        batches = self.source.batches(epoch_seed)

        def prepare(batch: Batch) -> Batch:
            return self.source.prepare(batch, self.device)

        if self.prefetch > 0:
            self._current = _Prefetcher(batches, prepare, self.device, self.prefetch)
        else:
            self._current = _Inline(batches, prepare)
        return self._current

    def close(self) -> None:
        """Stop the background thread of the last ``iter()``, if any."""
        if self._current is not None:
            self._current.close()
            self._current = None
