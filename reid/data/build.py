"""Data loaders for training (batches as the sampler cuts them) and testing (query then gallery).

:func:`build_train_loader`, :func:`build_batched_train_loader` and :func:`build_inference_loader`
take plain arguments; :func:`build_reid_train_loader` and :func:`build_reid_test_loader` build
everything from a config for the current process (the engine calls them). Training loaders are
:class:`~reid.data.loader.TrainLoader` s: batches on the model's device, prepared ahead by a
background thread, from per-image workers or (INPUT.BACKEND "batched") from a decoded-image cache
augmented a whole batch at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.modeling.meta_arch.build import resolve_device
from reid.structures import BatchKeys
from reid.utils import comm
from reid.utils.env import seed_all_rng

from .batch_augment import BatchAugment, UnsupportedAugmentation
from .datasets import ImageDataset, build_dataset, build_train_records
from .datasets.bases import Record
from .image_cache import open_image_cache
from .loader import CachedBatches, PerImageBatches, SeededSampler, TrainLoader
from .samplers import TrainSampler, build_train_sampler
from .transforms import build_transforms

LOADER_CONFIG = declare(
    ConfigBlock(
        "",
        "Batch sizes and loader processes.",
        {
            "DATALOADER.NUM_WORKERS": Key(
                8, "Loader processes per training process; 0 = load in the main process."
            ),
            "DATALOADER.PERSISTENT_WORKERS": Key(
                True,
                "Keep the training loader's processes between epochs (no restart each epoch). "
                "Each image's augmentation is seeded by its position in the epoch, so runs and "
                "resumes draw the same either way.",
            ),
            "DATALOADER.PREFETCH_FACTOR": Key(
                2, "Batches each loader process prepares ahead (with NUM_WORKERS > 0)."
            ),
            "DATALOADER.PIN_MEMORY": Key(
                True,
                "With a CUDA model, load batches into pinned host memory, so that copies to the "
                "GPU do not block.",
            ),
            "DATALOADER.PREFETCH_THREAD": Key(
                "auto",
                '"on": a background thread fetches the next training batches, copies them to '
                "the model's device (on a side CUDA stream) and, with the batched backend, "
                'augments them, while the model computes; "off": the training loop does it; '
                '"auto": on, except for per-image loading in the training process (INPUT.BACKEND '
                '"per_image" with NUM_WORKERS 0), where "on" is refused: the thread would draw '
                "augmentations from the random generator the model uses at the same time; and "
                "except for the batched backend on a CPU model, whose augmentation would take the "
                "cores the step computes on.",
            ),
            "SOLVER.IMS_PER_BATCH": Key(
                64, "Training images per batch over all processes (P * K for the PK sampler)."
            ),
            "TEST.IMS_PER_BATCH": Key(64, "Test images per batch over all processes."),
        },
    )
)

BACKEND_CONFIG = declare(
    ConfigBlock(
        "INPUT",
        "The training input backend (reid/data/build.py, reid/data/batch_augment.py).",
        {
            "BACKEND": Key(
                "per_image",
                '"per_image": loader processes decode and augment every image each epoch; '
                '"batched": each training image is decoded once into a cache (INPUT.CACHE_DIR) '
                "and whole batches are augmented on MODEL.DEVICE, with the per-image transforms' "
                "distributions (flip, pad + crop, random resized crop, random erasing); a "
                "configured augmentation it does not implement is an error.",
            ),
            "CACHE_DIR": Key(
                "",
                'Folder of the batched backend\'s decoded-image cache; "" = '
                "OUTPUT_DIR/image_cache. Runs with the same images and resize share a cache; it "
                "is rebuilt when an image file changes.",
            ),
        },
    )
)

BACKENDS = ("per_image", "batched")
PREFETCH_THREAD = ("auto", "on", "off")
PREFETCH_DEPTH = 2  # batches the background thread prepares ahead

Transform = Callable[[Image.Image], torch.Tensor]


def read_image(path: str) -> Image.Image:
    """An RGB PIL image; a file that cannot be read is an error naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Image.DecompressionBombError as e:
        raise OSError(
            f"cannot read image {path}: it has more pixels than PIL accepts ({e}); shrink the "
            f"image or remove it from the dataset"
        ) from e
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read image {path}: {e}") from e


class ReidDataset(Dataset):
    """Records -> batch items with the :class:`~reid.structures.BatchKeys`.

    An item is asked for by its index, or by ``(index, seed)``: the transform then draws its
    randomness from torch's generator seeded with ``seed`` (restored afterwards in the training
    process itself), so an augmentation depends on the seed alone, not on which loader process
    makes it or what it made before.

    Args:
        records: The images to load, in index order.
        transform: PIL image -> 3 x H x W float tensor.
    """

    def __init__(self, records: Sequence[Record], transform: Transform) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def _transform(self, image: Image.Image, seed: int | None) -> torch.Tensor:
        if seed is None:
            return self.transform(image)
        if get_worker_info() is not None:  # a loader process: its generator serves this alone
            torch.default_generator.manual_seed(seed)
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.transform(image)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, object]:
        index, seed = index if isinstance(index, tuple) else (index, None)
        record = self.records[index]
        return {
            BatchKeys.IMAGES: self._transform(read_image(record.path), seed),
            BatchKeys.TARGETS: record.pid,
            BatchKeys.CAMIDS: record.camid,
            BatchKeys.PATHS: record.path,
        }


class InferenceSampler(Sampler[int]):
    """Contiguous, nearly equal shares of ``range(size)`` per rank, in order (to gather features).

    Args:
        size: The number of items.
        rank: The process this sampler serves.
        world_size: The number of processes.

    >>> [list(InferenceSampler(5, rank, 2)) for rank in range(2)]
    [[0, 1, 2], [3, 4]]
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        shard = -(-size // world_size)
        self.indices = range(rank * shard, min(size, (rank + 1) * shard))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    seed_all_rng(torch.initial_seed() % 2**31)


def build_train_loader(
    records: Sequence[Record],
    transform: Transform,
    sampler: TrainSampler,
    num_workers: int = 0,
    *,
    device: str | torch.device = "cpu",
    pin_memory: bool = True,
    persistent_workers: bool = False,
    prefetch_factor: int = 2,
    prefetch: int = 0,
) -> TrainLoader:
    """Per-image loading: batches of ``sampler.batch_size`` images in the sampler's order, the
    last partial one dropped, on ``device``; call ``loader.sampler.set_epoch(epoch)`` before each
    epoch.

    Args:
        records: The training images; the sampler indexes them.
        transform: The training transform (seeded per image, see :class:`ReidDataset`).
        sampler: This process's training sampler.
        num_workers: Loader processes; 0 = load in the main process.
        device: Where the batches go.
        pin_memory: Pinned host batches (used with a CUDA ``device`` only).
        persistent_workers: Keep the loader processes between epochs.
        prefetch_factor: Batches each loader process prepares ahead.
        prefetch: Batches a background thread prepares ahead (0 = none); with ``num_workers``
            0 the thread would share torch's generator with the caller: refused.
    """
    if prefetch and num_workers == 0:
        raise ValueError(
            "a prefetch thread over per-image loading in this process (num_workers 0) would "
            "draw augmentations from the generator the model uses at the same time; use loader "
            "processes or no thread"
        )
    device = torch.device(device)
    workers: dict[str, object] = {}
    if num_workers > 0:
        workers = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor}
    loader = DataLoader(
        ReidDataset(records, transform),
        batch_size=sampler.batch_size,
        sampler=SeededSampler(sampler),
        num_workers=num_workers,
        drop_last=True,
        pin_memory=pin_memory and device.type == "cuda",
        worker_init_fn=_seed_worker,
        **workers,  # type: ignore[arg-type]
    )
    return TrainLoader(PerImageBatches(loader), sampler, device, prefetch=prefetch)


def build_batched_train_loader(
    records: Sequence[Record],
    transform: Transform,
    sampler: TrainSampler,
    cache_dir: str,
    *,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    pin_memory: bool = True,
    prefetch: int = 0,
) -> TrainLoader:
    """The batched backend: the images decoded once into a cache in ``cache_dir`` (built first
    if missing or stale), augmented a batch at a time on ``device`` as ``transform`` would.

    Args:
        records: The training images; the sampler indexes them.
        transform: The per-image training pipeline, translated by
            :meth:`BatchAugment.from_transform`.
        sampler: This process's training sampler.
        cache_dir: The cache's folder.
        device: Where the batches are augmented and go.
        num_workers: Decoding processes while building the cache.
        pin_memory: Pinned host batches (used with a CUDA ``device`` only).
        prefetch: Batches a background thread prepares ahead (0 = none).

    Raises:
        UnsupportedAugmentation: ``transform`` has a step the backend does not implement.
    """
    resize, augment = BatchAugment.from_transform(transform)
    device = torch.device(device)
    cache = open_image_cache([r.path for r in records], resize, cache_dir, num_workers)
    source = CachedBatches(
        cache,
        records,
        sampler,
        sampler.batch_size,
        augment,
        pin_memory=pin_memory and device.type == "cuda",
    )
    return TrainLoader(source, sampler, device, prefetch=prefetch)


def build_inference_loader(
    dataset: ImageDataset,
    transform: Transform,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> tuple[DataLoader, int]:
    """A loader over the query then the gallery images of a test set, this process's share.

    Args:
        dataset: The test set.
        transform: The test transform.
        batch_size: Images per batch of this process.
        num_workers: Loader processes; 0 = load in the main process.
        rank: The process the loader serves.
        world_size: The number of processes.
        pin_memory: Pinned host batches (for asynchronous copies to a GPU).
        prefetch_factor: Batches each loader process prepares ahead.

    Returns:
        The loader and the number of queries (the first items, over all processes).

    Raises:
        ValueError: The query or the gallery split is empty (naming the dataset and its folder).
    """
    check_evaluable(dataset)
    records: list[Record] = list(dataset.query) + list(dataset.gallery)
    loader = DataLoader(
        ReidDataset(records, transform),
        batch_size=batch_size,
        sampler=InferenceSampler(len(records), rank, world_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
    return loader, len(dataset.query)


def check_evaluable(dataset: ImageDataset) -> None:
    """A test set needs query and gallery images.

    Raises:
        ValueError: The query or the gallery split is empty; names the dataset and its folder.
    """
    for split, items in (("query", dataset.query), ("gallery", dataset.gallery)):
        if not items:
            raise ValueError(
                f"test dataset {dataset.name} ({dataset.dataset_dir}) has an empty {split} split: "
                f"there is nothing to evaluate. Put its {split} images in place, or remove "
                f"{dataset.name} from DATASETS.TESTS"
            )


def check_test_set(cfg: CfgNode, dataset_name: str) -> None:
    """Read the test set ``dataset_name`` and check that it can be evaluated (before training,
    so that a missing or empty test set is not found only after it).

    Raises:
        ValueError: Its query or gallery split is empty.
    """
    with comm.main_process_first():
        dataset = build_dataset(dataset_name, cfg)
    check_evaluable(dataset)


def _num_workers(cfg: CfgNode) -> int:
    workers = cfg.DATALOADER.NUM_WORKERS
    if workers < 0:
        raise ConfigError(
            f"DATALOADER.NUM_WORKERS must be >= 0 (0 loads the images in the main process), "
            f"got {workers}"
        )
    return workers


def build_reid_train_loader(cfg: CfgNode) -> tuple[TrainLoader, int]:
    """The training loader of this process and the number of training identities.

    DATASETS.NAMES gives the records, DATALOADER.SAMPLER_TRAIN the sampler (seeded with SEED),
    INPUT.* the transform and INPUT.BACKEND how it runs, DATALOADER.* the processes, pinning and
    prefetching; batches of SOLVER.IMS_PER_BATCH / world_size images arrive on MODEL.DEVICE. The
    sampler is ``loader.sampler``; call its ``set_epoch`` before each epoch.

    Args:
        cfg: The whole config.
    """
    num_workers = _num_workers(cfg)
    with comm.main_process_first():
        records, num_classes = build_train_records(cfg)
    world_size, rank = comm.get_world_size(), comm.get_rank()
    if cfg.SOLVER.IMS_PER_BATCH % world_size != 0:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by the number "
            f"of processes ({world_size})"
        )
    sampler = build_train_sampler(cfg, records, rank=rank, world_size=world_size, seed=cfg.SEED)
    transform = build_transforms(cfg, is_train=True)
    d = cfg.DATALOADER
    backend, thread = cfg.INPUT.BACKEND, d.PREFETCH_THREAD
    if backend not in BACKENDS:
        raise ConfigError(f"INPUT.BACKEND must be one of {list(BACKENDS)}, got {backend!r}")
    if thread not in PREFETCH_THREAD:
        raise ConfigError(
            f"DATALOADER.PREFETCH_THREAD must be one of {list(PREFETCH_THREAD)}, got {thread!r}"
        )
    in_process = backend == "per_image" and num_workers == 0
    if thread == "on" and in_process:
        raise ConfigError(
            "DATALOADER.PREFETCH_THREAD 'on' with per-image loading in the training process "
            "(DATALOADER.NUM_WORKERS 0): the thread would draw augmentations from the random "
            "generator the model uses at the same time; set NUM_WORKERS > 0, INPUT.BACKEND "
            "'batched' or PREFETCH_THREAD 'auto'"
        )
    device = resolve_device(cfg.MODEL.DEVICE)
    # On a CPU model the batched augmentation would take the cores the step computes on.
    competes = backend == "batched" and device.type == "cpu"
    automatic = thread == "auto" and not in_process and not competes
    prefetch = PREFETCH_DEPTH if thread == "on" or automatic else 0
    if backend == "batched":
        cache_dir = cfg.INPUT.CACHE_DIR or os.path.join(cfg.OUTPUT_DIR, "image_cache")
        try:
            with comm.main_process_first():
                loader = build_batched_train_loader(
                    records,
                    transform,
                    sampler,
                    cache_dir,
                    device=device,
                    num_workers=num_workers,
                    pin_memory=d.PIN_MEMORY,
                    prefetch=prefetch,
                )
        except UnsupportedAugmentation as e:
            raise ConfigError(f"INPUT.BACKEND 'batched': {e}") from None
        return loader, num_classes
    loader = build_train_loader(
        records,
        transform,
        sampler,
        num_workers,
        device=device,
        pin_memory=d.PIN_MEMORY,
        persistent_workers=d.PERSISTENT_WORKERS,
        prefetch_factor=d.PREFETCH_FACTOR,
        prefetch=prefetch,
    )
    return loader, num_classes


def build_reid_test_loader(cfg: CfgNode, dataset_name: str) -> tuple[DataLoader, int]:
    """This process's loader over the query then gallery images of ``dataset_name``.

    Args:
        cfg: The whole config.
        dataset_name: A registered dataset (an entry of DATASETS.TESTS).

    Returns:
        The loader (TEST.IMS_PER_BATCH / world_size images per batch) and the number of queries.

    Raises:
        ValueError: The dataset's query or gallery split is empty.
    """
    num_workers = _num_workers(cfg)
    with comm.main_process_first():
        dataset = build_dataset(dataset_name, cfg)
    world_size = comm.get_world_size()
    # Pinning only matters for copies to a GPU; the loader does not need the device otherwise.
    pin = cfg.DATALOADER.PIN_MEMORY and torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu"
    return build_inference_loader(
        dataset,
        build_transforms(cfg, is_train=False),
        batch_size=max(1, cfg.TEST.IMS_PER_BATCH // world_size),
        num_workers=num_workers,
        rank=comm.get_rank(),
        world_size=world_size,
        pin_memory=pin,
        prefetch_factor=cfg.DATALOADER.PREFETCH_FACTOR,
    )
