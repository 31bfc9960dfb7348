"""Features of your own images with a trained model: the Python API behind extract, search, export.

:class:`FeatureExtractor` is built from a run folder (:meth:`FeatureExtractor.from_run`) or a
config and weights (:meth:`FeatureExtractor.from_config`). It takes paths, PIL images, uint8
arrays (H x W x 3, RGB) or image tensors, batches them with the test transform (INPUT.SIZE_TEST,
INPUT.INTERPOLATION), runs the model in eval mode and returns the test features exactly as the
evaluator computes them:

- TEST.FLIP.ENABLED: the mean of the image's feature and its horizontally flipped copy's;
- TEST.METRIC prepares them for its distance (``Distance.prepare``): "cosine" returns
  L2-normalised features (so ``a @ b.T`` is the cosine similarity and 1 - it the distance the
  metric uses); "euclidean" returns them unnormalised (the squared Euclidean distance of the
  metric is taken between these vectors).

Query expansion and re-ranking (TEST.AQE, TEST.RERANK) act on a whole query and gallery set,
not on single images, so they are not part of a feature.

:class:`FeatureModel` is the deployable part: a plain B x 3 x H x W image tensor (RGB, values
0..255, already resized to INPUT.SIZE_TEST) in, the features out, with the pixel normalisation,
the flip averaging and the metric's preparation inside (``reid.export`` exports it).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from yacs.config import CfgNode

from reid.config import load_config, merge_from_list
from reid.config.files import RUN_CONFIG, find_config_file
from reid.data.build import read_image
from reid.data.transforms import EvalTransform
from reid.evaluation.distance import Distance, build_distance
from reid.modeling import build_model
from reid.modeling.meta_arch import resolve_device
from reid.structures import BatchKeys
from reid.utils.checkpoint import LAST_CHECKPOINT, load_checkpoint_file, load_state_strict

__all__ = [
    "DEFAULT_CHECKPOINT",
    "IMAGE_SUFFIXES",
    "PRECISIONS",
    "FeatureExtractor",
    "FeatureModel",
    "FileFeatures",
    "add_extractor_arguments",
    "build_inference_model",
    "default_weights",
    "extractor_from_args",
    "find_images",
]

logger = logging.getLogger(__name__)

# The checkpoint a run folder is deployed from: the model at the end of the schedule, whose
# numbers results.json reports. model_best.pth is the epoch with the best metric on the test set
# itself, which is a selection made with the test data.
DEFAULT_CHECKPOINT = "model_final.pth"

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


class FeatureModel(nn.Module):
    """Images (B x 3 x H x W, RGB, 0..255) -> test features, as the evaluator computes them.

    Args:
        model: A meta-architecture; its eval-mode ``model({"images": x})`` is the B x D feature
            (it normalises the pixels itself). Put in eval mode here.
        flip: Average each feature with the horizontally flipped image's (TEST.FLIP.ENABLED).
        metric: The registered distance (TEST.METRIC) whose ``prepare`` is applied last:
            "cosine" L2-normalises, "euclidean" leaves the features as they are.
        input_size: [height, width] the images must have been resized to (INPUT.SIZE_TEST);
            kept for exporters and callers, not checked in ``forward``.
    """

    def __init__(
        self,
        model: nn.Module,
        flip: bool = False,
        metric: str = "cosine",
        input_size: Sequence[int] = (256, 128),
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.flip = bool(flip)
        self.metric = metric
        self.distance: Distance = build_distance(metric)
        self.input_size = (int(input_size[0]), int(input_size[1]))

    @property
    def normalized(self) -> bool:
        """Whether the features come out L2-normalised: for the cosine metric."""
        return self.metric == "cosine"

    def train(self, mode: bool = True) -> FeatureModel:
        """Stays in eval mode: the test features are eval-mode features."""
        return super().train(False)

    def feature_dim(self) -> int:
        """D, from one forward pass of a blank image at ``input_size``."""
        device = next(self.parameters()).device
        with torch.no_grad():
            return int(self(torch.zeros(1, 3, *self.input_size, device=device)).shape[1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The B x D float32 features of a B x 3 x H x W batch (RGB, 0..255)."""
        features = self.model({BatchKeys.IMAGES: images})
        if self.flip:
            flipped = self.model({BatchKeys.IMAGES: torch.flip(images, dims=[3])})
            features = (features + flipped) / 2
        return self.distance.prepare(features.float())


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")


def default_weights(cfg: CfgNode, config_file: str | None = None) -> str:
    """The weights a config means: MODEL.WEIGHTS, else the run's ``model_final.pth``.

    The run's folder is the one ``config_file`` lies in when it is a run's ``config.yaml``
    (the folder may have moved since training), else OUTPUT_DIR.

    Raises:
        FileNotFoundError: MODEL.WEIGHTS is empty and no ``model_final.pth`` exists; the message
            names the places looked at.
    """
    if cfg.MODEL.WEIGHTS:
        return str(cfg.MODEL.WEIGHTS)
    folders = []
    if config_file and os.path.basename(config_file) == RUN_CONFIG:
        folders.append(os.path.dirname(os.path.abspath(config_file)))
    folders.append(cfg.OUTPUT_DIR)
    for folder in folders:
        path = os.path.join(folder, DEFAULT_CHECKPOINT)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"no weights: MODEL.WEIGHTS is empty and there is no {DEFAULT_CHECKPOINT} in "
        f"{' or '.join(dict.fromkeys(folders))}; train the config first or set MODEL.WEIGHTS"
    )


def _checkpoint_in(run_dir: str, checkpoint: str) -> str:
    """A run folder's checkpoint: a file name in it, a path, or "last" (``last_checkpoint``)."""
    if checkpoint == "last":
        marker = os.path.join(run_dir, LAST_CHECKPOINT)
        if not os.path.isfile(marker):
            raise FileNotFoundError(f"{run_dir} has no {LAST_CHECKPOINT} file (no checkpoint yet)")
        with open(marker, encoding="utf-8") as f:
            checkpoint = f.read().strip()
    path = checkpoint if os.path.isabs(checkpoint) else os.path.join(run_dir, checkpoint)
    if not os.path.isfile(path):
        found = sorted(n for n in os.listdir(run_dir) if n.endswith(".pth"))
        raise FileNotFoundError(
            f"checkpoint not found: {path} (checkpoints in {run_dir}: {', '.join(found) or 'none'})"
        )
    return path


def build_inference_model(
    cfg: CfgNode,
    weights: str,
    device: str | torch.device | None = None,
    use_ema: bool | None = None,
) -> nn.Module:
    """The model of ``cfg`` with ``weights``, in eval mode, loaded strictly.

    No ImageNet weights are read (MODEL.BACKBONE.PRETRAIN is switched off: every weight comes
    from ``weights``). The classifier is sized from the checkpoint's ``num_classes`` (or
    MODEL.HEADS.NUM_CLASSES); a checkpoint that records neither gets a one-row classifier,
    re-initialised (the test features never read it).

    Args:
        cfg: The model's config.
        weights: A checkpoint or a bare state dict (read with ``weights_only=True``).
        device: Where the model runs (default MODEL.DEVICE).
        use_ema: Load the checkpoint's exponential moving average of the weights (what a run
            with SOLVER.EMA evaluated) instead of its raw weights; None = when it has one.

    Raises:
        WeightsMismatchError: The weights do not fit the config's model.
        ValueError: ``use_ema`` is True and the checkpoint holds no average.
    """
    checkpoint = load_checkpoint_file(weights)
    num_classes = int(checkpoint.get("num_classes", 0)) or int(cfg.MODEL.HEADS.NUM_CLASSES) or 1
    has_ema = isinstance(checkpoint.get("ema"), dict)
    if use_ema and not has_ema:
        raise ValueError(f"{weights}: use_ema=True but the checkpoint holds no EMA weights")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.BACKBONE.PRETRAIN = False  # the checkpoint replaces every weight
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = ""
    if device is not None:
        cfg.MODEL.DEVICE = str(device)
    cfg.freeze()
    model = build_model(cfg)
    if has_ema and use_ema is not False:
        load_state_strict(
            model, checkpoint["ema"], source=f"{weights} (EMA)", foreign_keys=("n_averaged",)
        )
    else:
        load_state_strict(model, checkpoint["model"], source=weights)
    return model.eval()


@dataclass
class FileFeatures:
    """The features of image files, in the order given, and the files that could not be used.

    Attributes:
        features: N x D float32, one row per readable file.
        paths: The N readable files.
        failed: (file, reason) of each file that was skipped.
    """

    features: np.ndarray
    paths: list[str]
    failed: list[tuple[str, str]] = field(default_factory=list)


class _Files(Dataset):
    """(index, image tensor or None, error) per file: a bad file never stops the others."""

    def __init__(self, paths: Sequence[str], transform: EvalTransform) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return index, self.transform(read_image(self.paths[index])), ""
        except Exception as e:  # any reader or transform failure: report the file, go on
            return index, None, f"{type(e).__name__}: {e}"


def _collate(
    items: list[tuple[int, torch.Tensor | None, str]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, error) for i, t, error in items if t is None]
    images = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], images, bad


class FeatureExtractor:
    """Test features of images with a trained model, as the evaluator computes them.

    Args:
        model: A meta-architecture with its weights (see :func:`build_inference_model`).
        input_size: [height, width] of the test transform (INPUT.SIZE_TEST).
        interpolation: Its resampling (INPUT.INTERPOLATION).
        flip: Average with the flipped image's feature (TEST.FLIP.ENABLED).
        metric: TEST.METRIC: "cosine" gives L2-normalised features, "euclidean" raw ones.
        device: Where the model runs (default: where it is).
        precision: "fp32", or "fp16" / "bf16" (autocast on the device; features returned as
            float32).
        batch_size: Images per forward pass (TEST.IMS_PER_BATCH).
        num_workers: Loader processes reading files in :meth:`extract_files` (0 = none).

    ``extractor(images)`` returns an N x D float32 tensor on the CPU. The images are a path, a
    PIL image, a uint8 array H x W x 3 (RGB), a 3 x H x W tensor (uint8, or float with values
    0..255), or a list of these, or a B x 3 x H x W tensor / B x H x W x 3 uint8 array; a single
    image gives a 1 x D result.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: Sequence[int] = (256, 128),
        interpolation: str = "bicubic",
        flip: bool = False,
        metric: str = "cosine",
        device: str | torch.device | None = None,
        precision: str = "fp32",
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        _check_precision(precision)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.transform = EvalTransform(size=input_size, interpolation=interpolation)
        self.feature_model = FeatureModel(model, flip=flip, metric=metric, input_size=input_size)
        if device is not None:
            self.feature_model.to(resolve_device(str(device)))
        self.device = next(self.feature_model.parameters()).device
        self.precision = precision
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._dim: int | None = None

    @classmethod
    def from_config(
        cls,
        config: str | CfgNode,
        weights: str | None = None,
        *,
        opts: Sequence[str] = (),
        device: str | None = None,
        precision: str = "fp32",
        use_ema: bool | None = None,
    ) -> FeatureExtractor:
        """The extractor of a config and weights.

        Args:
            config: A config file (a path, a run folder, a shipped config's name) or a config.
            weights: The checkpoint (default: MODEL.WEIGHTS, else the run's model_final.pth; see
                :func:`default_weights`).
            opts: KEY VALUE overrides.
            device: Where to run (default MODEL.DEVICE: "auto" = CUDA when available).
            precision: "fp32", "fp16" or "bf16".
            use_ema: See :func:`build_inference_model`.
        """
        _check_precision(precision)
        config_file = None
        if isinstance(config, CfgNode):
            cfg = config.clone()
            cfg.defrost()
            merge_from_list(cfg, list(opts))
        else:
            config_file = find_config_file(config)
            cfg = load_config(config_file, opts)
        weights = weights or default_weights(cfg, config_file)
        logger.info("Features of %s with the weights %s", config_file or "the config", weights)
        model = build_inference_model(cfg, weights, device or cfg.MODEL.DEVICE, use_ema)
        return cls(
            model,
            input_size=cfg.INPUT.SIZE_TEST,
            interpolation=cfg.INPUT.INTERPOLATION,
            flip=cfg.TEST.FLIP.ENABLED,
            metric=cfg.TEST.METRIC,
            precision=precision,
            batch_size=cfg.TEST.IMS_PER_BATCH,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    @classmethod
    def from_run(
        cls,
        run_dir: str,
        checkpoint: str = DEFAULT_CHECKPOINT,
        *,
        opts: Sequence[str] = (),
        device: str | None = None,
        precision: str = "fp32",
        use_ema: bool | None = None,
    ) -> FeatureExtractor:
        """The extractor of a training run: its ``config.yaml`` and one of its checkpoints.

        Args:
            run_dir: The run's OUTPUT_DIR.
            checkpoint: A file name in it, a path, or "last" (the newest checkpoint). The
                default, ``model_final.pth``, is the model the run ended with, whose numbers
                results.json reports; ``model_best.pth`` was picked on the test set's metric.
            opts, device, precision, use_ema: As :meth:`from_config` takes them.
        """
        config_file = os.path.join(run_dir, RUN_CONFIG)
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"{run_dir} is not a run folder: it has no {RUN_CONFIG}")
        return cls.from_config(
            config_file,
            _checkpoint_in(run_dir, checkpoint),
            opts=opts,
            device=device,
            precision=precision,
            use_ema=use_ema,
        )

    @property
    def metric(self) -> str:
        """The distance the features are prepared for (TEST.METRIC)."""
        return self.feature_model.metric

    @property
    def normalized(self) -> bool:
        """Whether the features are L2-normalised."""
        return self.feature_model.normalized

    @property
    def feature_dim(self) -> int:
        """D, the length of a feature."""
        if self._dim is None:
            self._dim = self.feature_model.feature_dim()
        return self._dim

    def _autocast(self) -> AbstractContextManager[Any]:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), self._autocast():
            features = self.feature_model(images.to(self.device))
        return features.float().cpu()

    def _image_tensor(self, image: ImageInput, position: int) -> torch.Tensor:
        """One image through the test transform; a bad one is an error naming its position."""
        if isinstance(image, (str, os.PathLike)):
            return self.transform(read_image(os.fspath(image)))
        if isinstance(image, Image.Image):
            return self.transform(image)
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"image {position}: an array must be uint8 H x W x 3 (RGB), got "
                    f"{image.dtype} {image.shape}"
                )
            # torch wants writable memory; np.asarray(pil_image) is read-only.
            return self.transform(image if image.flags.writeable else image.copy())
        if isinstance(image, torch.Tensor):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"image {position}: a tensor must be 3 x H x W (RGB), got {tuple(image.shape)}"
                )
            if (
                image.is_floating_point()
                and image.numel()
                and (image.min() < 0 or image.max() > 255)
            ):
                raise ValueError(
                    f"image {position}: a float tensor must hold values in 0..255, got "
                    f"{float(image.min()):g}..{float(image.max()):g}"
                )
            if image.dtype != torch.uint8 and not image.is_floating_point():
                raise ValueError(
                    f"image {position}: a tensor must be uint8 or float, got {image.dtype}"
                )
            return self.transform(image.cpu())
        raise TypeError(
            f"image {position}: expected a path, a PIL image, a uint8 H x W x 3 array or a "
            f"3 x H x W tensor, got {type(image).__name__}"
        )

    @staticmethod
    def _as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
        if isinstance(images, (str, os.PathLike, Image.Image)):
            return [images]
        if isinstance(images, torch.Tensor):
            return list(images) if images.dim() == 4 else [images]
        if isinstance(images, np.ndarray):
            return list(images) if images.ndim == 4 else [images]
        return list(images)

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """N x D float32 features (CPU) of the images, in their order.

        Raises:
            OSError: A path that cannot be read as an image (named).
            ValueError, TypeError: An input of another kind or shape (its position named).
        """
        items = self._as_list(images)
        if not items:
            return torch.zeros(0, self.feature_dim)
        chunks = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            tensors = [self._image_tensor(x, start + i) for i, x in enumerate(batch)]
            chunks.append(self._forward(torch.stack(tensors)))
        return torch.cat(chunks)

    def extract_files(self, paths: Sequence[str], progress: bool = False) -> FileFeatures:
        """Features of image files; a file that cannot be read is skipped and reported.

        Args:
            paths: The image files.
            progress: Show a progress bar (on stderr).

        Returns:
            The features of the readable files and the (file, reason) of the others.
        """
        loader = DataLoader(
            _Files(paths, self.transform),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
        )
        chunks: list[torch.Tensor] = []
        kept: list[str] = []
        failed: list[tuple[str, str]] = []
        for indices, images, errors in _progress(loader, len(paths), progress):
            for index, error in errors:
                logger.warning("skipped %s: %s", paths[index], error)
                failed.append((paths[index], error))
            if images is not None:
                chunks.append(self._forward(images))
                kept.extend(paths[i] for i in indices)
        features = torch.cat(chunks) if chunks else torch.zeros(0, self.feature_dim)
        return FileFeatures(features.numpy().astype(np.float32), kept, failed)


def _progress(
    loader: DataLoader, total: int, enabled: bool
) -> Iterator[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]:
    """The loader's batches, with a bar counting images when ``enabled``."""
    if not enabled:
        yield from loader
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="img", desc="features", dynamic_ncols=True) as bar:
        for batch in loader:
            yield batch
            bar.update(len(batch[0]) + len(batch[2]))


def _images_under(folder: str) -> list[str]:
    return [
        os.path.join(parent, name)
        for parent, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_SUFFIXES)
    ]


def find_images(inputs: Sequence[str]) -> list[str]:
    """The image files that files, folders (searched recursively) and glob patterns name.

    Folders, and the files and folders a pattern matches, contribute the files with an image
    suffix (IMAGE_SUFFIXES, any case), sorted; a file named explicitly is kept whatever its
    suffix. Duplicates are dropped, the
    first occurrence kept.

    Args:
        inputs: Paths, folders or glob patterns (``**`` matches folders recursively).

    Raises:
        FileNotFoundError: An input that names nothing, or a folder or pattern without images.
    """
    found: dict[str, None] = {}
    for item in inputs:
        if os.path.isfile(item):
            found[item] = None
            continue
        if os.path.isdir(item):
            matches = _images_under(item)
        elif glob.has_magic(item):
            matches = []
            for path in glob.glob(item, recursive=True):
                if os.path.isdir(path):
                    matches.extend(_images_under(path))
                elif path.lower().endswith(IMAGE_SUFFIXES):
                    matches.append(path)
        else:
            raise FileNotFoundError(f"input not found: {item} (not a file, folder or pattern)")
        if not matches:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {item}")
        found.update(dict.fromkeys(sorted(matches)))
    return list(found)


def add_extractor_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The command-line options of a tool that extracts features: --config-file, --device,
    --precision (the tool adds the trailing KEY VALUE ``opts``)."""
    parser.add_argument(
        "--config-file",
        required=required,
        metavar="FILE",
        help="a config file, a run folder or a shipped config's name; the weights are "
        "MODEL.WEIGHTS, else the run's model_final.pth",
    )
    parser.add_argument(
        "--device", default=None, help="where the model runs (default: MODEL.DEVICE)"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=sorted(PRECISIONS),
        help="fp32 (default), or autocast to fp16 / bf16",
    )


def extractor_from_args(args: argparse.Namespace) -> FeatureExtractor:
    """The extractor that the options of :func:`add_extractor_arguments` and ``opts`` name."""
    return FeatureExtractor.from_config(
        args.config_file,
        opts=list(getattr(args, "opts", None) or []),
        device=args.device,
        precision=args.precision,
    )
