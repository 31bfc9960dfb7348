"""Data loaders for training (PK batches) and testing (query then gallery)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.utils import comm
from reid.utils.env import seed_all_rng

from .datasets import build_dataset, build_train_records
from .datasets.bases import Record
from .samplers import build_train_sampler
from .transforms import build_transforms

logger = logging.getLogger("reid")


LOADER_CONFIG = declare(
    ConfigBlock(
        "",
        "Batch sizes and loader processes.",
        {
            "DATALOADER.NUM_WORKERS": Key(
                4,
                "Loader processes per training process; 0 = load in the main process.",
            ),
            "SOLVER.IMS_PER_BATCH": Key(
                64,
                "Mini-batch size (P * K for the PK sampler), over all GPUs.",
            ),
            "TEST.IMS_PER_BATCH": Key(
                128,
                "Images per test batch, over all processes.",
            ),
        },
    )
)


def read_image(path: str) -> Image.Image:
    """An RGB PIL image; a file that cannot be read is an error naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read image {path}: {e}") from e


class ReidDataset(Dataset):
    """Records -> batch items ``{images, targets, camids, img_paths}``."""

    def __init__(
        self, records: Sequence[Record], transform: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, object]:
        record = self.records[index]
        return {
            "images": self.transform(read_image(record.path)),
            "targets": record.pid,
            "camids": record.camid,
            "img_paths": record.path,
        }


class InferenceSampler(Sampler[int]):
    """Contiguous, nearly equal shares of ``range(size)`` per rank, in order (for gathering features)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        shard = -(-size // world_size)
        self.indices = range(rank * shard, min(size, (rank + 1) * shard))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    seed_all_rng(torch.initial_seed() % 2**31)


def build_reid_train_loader(cfg: CfgNode) -> tuple[DataLoader, int]:
    """The training loader (batches of IMS_PER_BATCH / world_size) and the number of identities.

    The sampler is reachable as ``loader.sampler``; call ``set_epoch`` on it before each epoch.
    """
    with comm.main_process_first():
        records, num_classes = build_train_records(cfg)
    world_size, rank = comm.get_world_size(), comm.get_rank()
    if cfg.SOLVER.IMS_PER_BATCH % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by the number of processes ({world_size})"
        )
    sampler = build_train_sampler(cfg, records, rank=rank, world_size=world_size, seed=cfg.SEED)
    loader = DataLoader(
        ReidDataset(records, build_transforms(cfg, is_train=True)),
        batch_size=cfg.SOLVER.IMS_PER_BATCH // world_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_seed_worker,
    )
    return loader, num_classes


def build_reid_test_loader(cfg: CfgNode, dataset_name: str) -> tuple[DataLoader, int]:
    """A loader over query then gallery images of ``dataset_name``, and the number of queries."""
    with comm.main_process_first():
        dataset = build_dataset(dataset_name, cfg)
    records: list[Record] = list(dataset.query) + list(dataset.gallery)
    sampler = InferenceSampler(len(records), comm.get_rank(), comm.get_world_size())
    loader = DataLoader(
        ReidDataset(records, build_transforms(cfg, is_train=False)),
        batch_size=max(1, cfg.TEST.IMS_PER_BATCH // comm.get_world_size()),
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, len(dataset.query)
