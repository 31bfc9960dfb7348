"""Data loaders for training (batches as the sampler cuts them) and testing (query then gallery).

:func:`build_train_loader` and :func:`build_inference_loader` take plain arguments;
:func:`build_reid_train_loader` and :func:`build_reid_test_loader` build everything from a config
for the current process (the engine calls them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.structures import BatchKeys
from reid.utils import comm
from reid.utils.env import seed_all_rng

from .datasets import ImageDataset, build_dataset, build_train_records
from .datasets.bases import Record
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
            "SOLVER.IMS_PER_BATCH": Key(
                64, "Training images per batch over all processes (P * K for the PK sampler)."
            ),
            "TEST.IMS_PER_BATCH": Key(64, "Test images per batch over all processes."),
        },
    )
)

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

    Args:
        records: The images to load, in index order.
        transform: PIL image -> 3 x H x W float tensor.
    """

    def __init__(self, records: Sequence[Record], transform: Transform) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, object]:
        record = self.records[index]
        return {
            BatchKeys.IMAGES: self.transform(read_image(record.path)),
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
    records: Sequence[Record], transform: Transform, sampler: TrainSampler, num_workers: int = 0
) -> DataLoader:
    """Batches of ``sampler.batch_size`` images in the sampler's order, the last partial one
    dropped; call ``loader.sampler.set_epoch(epoch)`` before each epoch.

    Args:
        records: The training images; the sampler indexes them.
        transform: The training transform.
        sampler: This process's training sampler.
        num_workers: Loader processes; 0 = load in the main process.
    """
    return DataLoader(
        ReidDataset(records, transform),
        batch_size=sampler.batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_seed_worker,
    )


def build_inference_loader(
    dataset: ImageDataset,
    transform: Transform,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, int]:
    """A loader over the query then the gallery images of a test set, this process's share.

    Args:
        dataset: The test set.
        transform: The test transform.
        batch_size: Images per batch of this process.
        num_workers: Loader processes; 0 = load in the main process.
        rank: The process the loader serves.
        world_size: The number of processes.

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
        pin_memory=torch.cuda.is_available(),
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


def build_reid_train_loader(cfg: CfgNode) -> tuple[DataLoader, int]:
    """The training loader of this process and the number of training identities.

    DATASETS.NAMES gives the records, DATALOADER.SAMPLER_TRAIN the sampler (seeded with SEED),
    INPUT.* the transform; a batch holds SOLVER.IMS_PER_BATCH / world_size images. The sampler is
    ``loader.sampler``; call its ``set_epoch`` before each epoch.

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
    loader = build_train_loader(records, transform, sampler, num_workers)
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
    return build_inference_loader(
        dataset,
        build_transforms(cfg, is_train=False),
        batch_size=max(1, cfg.TEST.IMS_PER_BATCH // world_size),
        num_workers=num_workers,
        rank=comm.get_rank(),
        world_size=world_size,
    )
