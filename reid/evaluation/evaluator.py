"""The ReID evaluator: features of query and gallery images in, CMC / mAP / mINP (percent) out.

``inference_on_dataset`` runs the model in eval mode over a test loader (query images first,
then gallery) and feeds the features to a ``ReidEvaluator``. ``evaluate`` gathers the features
of all ranks (metrics are computed on rank 0; other ranks get ``{}``) and scores them with
``score_features``: optional alpha query expansion, distances chunk by chunk (optionally
k-reciprocal re-ranked), each chunk streamed into the rank metrics, so that the query x gallery
matrix is never held at once. Results are percentages keyed "Rank-1", "Rank-5", "Rank-10",
"mAP", "mINP", "metric" (= (mAP + Rank-1) / 2) and, with the ROC on, "TPR@FPR=1e-04" and so on.

What is computed is an :class:`EvalSettings`; ``EvalSettings.from_config`` reads it from TEST.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import (
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
    declare,
)
from reid.data.datasets import DATASET_REGISTRY
from reid.data.datasets.bases import Record
from reid.structures import BatchKeys
from reid.utils import comm
from reid.utils.file_io import atomic_write_json

from .distance import DISTANCE_REGISTRY, Distance, build_distance
from .gallery import GalleryIndex
from .gallery_draws import GalleryDraw, draws_gallery, gallery_draws
from .query_expansion import AQE_CONFIG, alpha_query_expansion, check_expansion
from .rank import auto_chunk_size, iter_chunks, score_chunks
from .rank_cuhk03 import CUHK03_CLASSIC_CONFIG, check_repeats
from .rerank import RERANK_CONFIG, FeatureDistances, check_rerank, rerank_chunks
from .roc import DEFAULT_FPRS, ROC_CONFIG, RocAccumulator, check_fprs

__all__ = [
    "TEST_CONFIG",
    "EvalSettings",
    "distance_chunks",
    "ReidEvaluator",
    "format_results_table",
    "inference_amp_dtype",
    "inference_on_dataset",
    "metric_percentages",
    "score_features",
    "single_gallery_shot_cmc",
]

logger = logging.getLogger(__name__)


TEST_CONFIG = declare(
    ConfigBlock(
        "TEST",
        "Evaluation: distance, flip averaging, chunking, AP variant (reid/evaluation/).",
        {
            "METRIC": Key(
                "cosine",
                'Distance (reid/evaluation/distance.py): "cosine" = 1 - cos of L2-normalised '
                'features; "euclidean" = the SQUARED Euclidean distance (fastreid\'s convention, '
                "same ranking as the Euclidean distance).",
            ),
            "FLIP.ENABLED": Key(
                False, "Average each image's feature with its horizontally flipped copy's."
            ),
            "CHUNK_SIZE": Key(
                0,
                "Queries per chunk for distances, ranking and re-ranking, which bounds the extra "
                "memory; 0 = chosen from the gallery size (about 4M distances per chunk on CPU, "
                "16M on CUDA).",
            ),
            "METRIC_THREADS": Key(
                1,
                "torch CPU threads for the ranking metric's passes (distances keep torch's "
                "setting); 0 = torch's setting. One thread avoids the stalls of multi-threaded "
                "short passes on shared cores.",
            ),
            "GALLERY_DRAWS": Key(
                1,
                "For a test set whose gallery is a random draw (VehicleID): N > 1 scores the draws "
                "of seeds 0..N-1 on the features extracted once and reports the mean of each "
                "metric (the published VehicleID protocol: 10; results.json records N per test "
                "set). 1 = the split the dataset was loaded with (DATASETS.VEHICLEID.REPEAT). Test "
                "sets with a fixed gallery ignore it; N > 1 with none of them in DATASETS.TESTS is "
                "an error.",
            ),
            "OFFICIAL_MARKET_AP": Key(
                False,
                "AP as the Market-1501 devkit computes it (trapezoid rule) instead of the "
                "non-interpolated AP of torchreid / fastreid (the default, used by the papers' "
                "tables).",
            ),
        },
    )
)


INFERENCE_CONFIG = declare(
    ConfigBlock(
        "TEST",
        "How test features are computed (reid/evaluation/evaluator.py: inference_on_dataset).",
        {
            "AMP.ENABLED": Key(
                False,
                "Mixed precision (autocast) for the test features; they are scored in float32.",
            ),
            "AMP.DTYPE": Key("bfloat16", '"bfloat16" or "float16".'),
        },
    )
)

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def inference_amp_dtype(cfg: CfgNode) -> torch.dtype | None:
    """TEST.AMP's autocast dtype, None when off.

    Raises:
        ConfigError: TEST.AMP.DTYPE is not "bfloat16" or "float16".
    """
    amp = INFERENCE_CONFIG.read(cfg).AMP
    if amp.DTYPE not in AMP_DTYPES:
        raise ConfigError(f"TEST.AMP.DTYPE must be one of {sorted(AMP_DTYPES)}, got {amp.DTYPE!r}")
    return AMP_DTYPES[amp.DTYPE] if amp.ENABLED else None


RANKS = (1, 5, 10)

# The arguments the components check -> the settings they come from, so that errors name those.
_SETTING_OF = {
    "qe_times": "aqe_times",
    "qe_k": "aqe_k",
    "k1": "rerank_k1",
    "k2": "rerank_k2",
    "lambda_value": "rerank_lambda",
    "fprs": "roc_fprs",
    "repeats": "cuhk03_repeats",
}


# The blocks of the optional parts and their key -> setting names.
_SETTING_KEYS = (
    (
        AQE_CONFIG,
        {"ENABLED": "aqe", "QE_TIME": "aqe_times", "QE_K": "aqe_k", "ALPHA": "aqe_alpha"},
    ),
    (
        RERANK_CONFIG,
        {"ENABLED": "rerank", "K1": "rerank_k1", "K2": "rerank_k2", "LAMBDA": "rerank_lambda"},
    ),
    (ROC_CONFIG, {"ENABLED": "roc", "FPRS": "roc_fprs"}),
    (
        CUHK03_CLASSIC_CONFIG,
        {"ENABLED": "single_gallery_shot", "REPEATS": "cuhk03_repeats", "SEED": "cuhk03_seed"},
    ),
)


def single_gallery_shot_cmc(dataset_name: str | None) -> bool:
    """Whether the registered dataset ``dataset_name`` reports the single-gallery-shot CMC.

    Its class says so (``ImageDataset.single_gallery_shot_cmc``, True on CUHK03); False for a
    name that is not a registered dataset.

    >>> single_gallery_shot_cmc("CUHK03"), single_gallery_shot_cmc("Market1501")
    (True, False)
    """
    if not dataset_name or dataset_name not in DATASET_REGISTRY:
        return False
    return bool(DATASET_REGISTRY.get(dataset_name).single_gallery_shot_cmc)


@dataclass(frozen=True)
class EvalSettings:
    """What :func:`score_features` computes; the defaults are those of the TEST keys.

    Args:
        metric: A registered distance: "cosine" or "euclidean" (squared).
        chunk_size: Queries per chunk; 0 = chosen from the gallery size.
        metric_threads: torch CPU threads for the ranking passes; 0 = torch's setting.
        official_ap: The Market-1501 devkit's AP instead of the non-interpolated one.
        aqe: Alpha query expansion of the features first (``aqe_times`` rounds over the
            ``aqe_k`` nearest, weights similarity ** ``aqe_alpha``).
        rerank: k-reciprocal re-ranking (``rerank_k1``, ``rerank_k2``, ``rerank_lambda``).
        roc: Also report the TPR at each false positive rate of ``roc_fprs``.
        single_gallery_shot: The classic CUHK03 CMC (``cuhk03_repeats`` draws seeded from
            ``cuhk03_seed``); mAP and mINP stay the full gallery's.
        gallery_draws: The number of random gallery draws whose mean is reported (1 for a test
            set with a fixed gallery; see :mod:`~reid.evaluation.gallery_draws`).
        config_keys: Setting -> the config key it was read from (``from_config`` fills it), so
            that errors name the key.
    """

    metric: str = "cosine"
    chunk_size: int = 0
    metric_threads: int = 1
    official_ap: bool = False
    aqe: bool = False
    aqe_times: int = 1
    aqe_k: int = 5
    aqe_alpha: float = 3.0
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    roc: bool = False
    roc_fprs: tuple[float, ...] = DEFAULT_FPRS
    single_gallery_shot: bool = False
    cuhk03_repeats: int = 10
    cuhk03_seed: int = 0
    gallery_draws: int = 1
    config_keys: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        with self.naming_errors():
            if self.metric not in DISTANCE_REGISTRY:
                raise InvalidArgument(
                    "metric",
                    f"must be a registered distance ({', '.join(DISTANCE_REGISTRY.names())}), "
                    f"got {self.metric!r}",
                )
            for name in ("chunk_size", "metric_threads"):
                if getattr(self, name) < 0:
                    raise InvalidArgument(name, f"must be >= 0, got {getattr(self, name)}")
            if self.aqe:
                check_expansion(self.aqe_times, self.aqe_k)
            if self.rerank:
                check_rerank(self.rerank_k1, self.rerank_k2, self.rerank_lambda)
            if self.roc:
                check_fprs(self.roc_fprs)
            if self.single_gallery_shot:
                check_repeats(self.cuhk03_repeats)
            if self.gallery_draws < 1:
                raise InvalidArgument("gallery_draws", f"must be >= 1, got {self.gallery_draws}")

    @classmethod
    def from_config(cls, cfg: CfgNode, dataset_name: str | None = None) -> EvalSettings:
        """The settings of the TEST section for the test set ``dataset_name``.

        Args:
            cfg: The whole config.
            dataset_name: The registered dataset being evaluated: TEST.CUHK03_CLASSIC applies
                when its class asks for the single-gallery-shot CMC, TEST.GALLERY_DRAWS when its
                gallery is a random draw.

        Raises:
            ConfigError: A key has a value the evaluation cannot use; the message names it.
        """
        args = TEST_CONFIG.arguments(
            cfg, skip=("FLIP.ENABLED",), rename={"OFFICIAL_MARKET_AP": "official_ap"}
        )
        for block, rename in _SETTING_KEYS:
            args.update_from(block.arguments(cfg, rename=rename))
        enabled = bool(args["single_gallery_shot"])
        args["single_gallery_shot"] = enabled and single_gallery_shot_cmc(dataset_name)
        args["roc_fprs"] = tuple(args["roc_fprs"])
        if not draws_gallery(dataset_name) and int(args["gallery_draws"]) >= 1:
            args["gallery_draws"] = 1
        return cls(**args, config_keys=dict(args.sources))

    @contextmanager
    def naming_errors(self) -> Iterator[None]:
        """Re-raise a component's :class:`InvalidArgument` under the setting it comes from, or
        as a :class:`ConfigError` naming the config key behind that setting."""
        try:
            yield
        except InvalidArgument as e:
            setting = _SETTING_OF.get(e.argument, e.argument)
            key = self.config_keys.get(setting)
            if key is not None:
                raise ConfigError(f"{key} {e.problem}") from None
            raise InvalidArgument(setting, e.problem) from None


def score_features(
    features: torch.Tensor,
    pids: torch.Tensor,
    camids: torch.Tensor,
    num_query: int,
    settings: EvalSettings | None = None,
) -> dict[str, float]:
    """The metrics of the features of queries (the first ``num_query``) then gallery items.

    Args:
        features: One feature per image, queries first.
        pids: The images' identities (int64, on the features' device).
        camids: The images' camera ids.
        num_query: How many of the images are queries.
        settings: What to compute (default: the defaults of :class:`EvalSettings`).

    Returns:
        Percentages keyed "Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric" and, with the
        ROC, one "TPR@FPR=..." per false positive rate.

    Two queries and four gallery images; query 1's relevant image comes second, after an image
    of another identity and one that shares its camera (dropped):

    >>> features = torch.tensor(
    ...     [[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0], [0.9, 0.5], [0.3, 1.0]])
    >>> pids, camids = torch.tensor([1, 2, 1, 3, 2, 2]), torch.tensor([0, 0, 1, 1, 1, 0])
    >>> results = score_features(features, pids, camids, num_query=2)
    >>> {name: round(value, 2) for name, value in results.items()}
    {'Rank-1': 50.0, 'Rank-5': 100.0, 'Rank-10': 100.0, 'mAP': 75.0, 'mINP': 75.0, 'metric': 62.5}
    """
    settings = settings if settings is not None else EvalSettings()
    qf, gf = features[:num_query], features[num_query:]
    q_pids, g_pids = pids[:num_query], pids[num_query:]
    q_camids, g_camids = camids[:num_query], camids[num_query:]
    with settings.naming_errors():
        roc = None
        if settings.roc:
            roc = RocAccumulator(GalleryIndex(g_pids, g_camids), q_pids, settings.roc_fprs)
        cmc, all_ap, all_inp = score_chunks(
            distance_chunks(qf, gf, settings),
            q_pids,
            q_camids,
            g_pids,
            g_camids,
            max_rank=max(RANKS),
            official_ap=settings.official_ap,
            use_metric_cuhk03=settings.single_gallery_shot,
            cuhk03_repeats=settings.cuhk03_repeats,
            cuhk03_seed=settings.cuhk03_seed,
            num_threads=settings.metric_threads,
            also=[roc] if roc is not None else [],
        )
    results = metric_percentages(cmc, all_ap, all_inp)
    if roc is not None:
        results.update({key: value * 100 for key, value in roc.compute().items()})
    return results


def distance_chunks(
    qf: torch.Tensor, gf: torch.Tensor, settings: EvalSettings
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The query x gallery distances the metric ranks by, as ``(start, end, rows)`` chunks.

    Alpha query expansion first (``settings.aqe``), then the distance of ``settings.metric``,
    k-reciprocal re-ranked with ``settings.rerank``; queries in order, ``settings.chunk_size``
    per chunk (0: chosen from the gallery size).

    Args:
        qf: Query features, one row each.
        gf: Gallery features.
        settings: What to compute.
    """
    if settings.aqe:
        qf, gf = alpha_query_expansion(
            qf,
            gf,
            settings.aqe_times,
            settings.aqe_k,
            settings.aqe_alpha,
            settings.chunk_size or None,
        )
    distance = build_distance(settings.metric)
    yield from _distance_chunks(distance.prepare(qf), distance.prepare(gf), distance, settings)


def _distance_chunks(
    qf: torch.Tensor, gf: torch.Tensor, distance: Distance, settings: EvalSettings
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, end, distances of queries start..end-1 to the gallery), re-ranked if asked."""
    if settings.rerank:
        yield from rerank_chunks(
            FeatureDistances(qf, gf, distance),
            settings.rerank_k1,
            settings.rerank_k2,
            settings.rerank_lambda,
            settings.chunk_size or None,
        )
        return
    step = settings.chunk_size or auto_chunk_size(gf.shape[0], qf.device)
    for start, end in iter_chunks(qf.shape[0], step):
        yield start, end, distance.pairwise(qf[start:end], gf)


def metric_percentages(
    cmc: np.ndarray, all_ap: np.ndarray, all_inp: np.ndarray
) -> dict[str, float]:
    """Rank-1/5/10, mAP, mINP and "metric" (percent) of ``score_chunks``' output.

    >>> metric_percentages(np.array([0.5, 1.0]), np.array([0.5, 1.0]), np.array([0.25, 1.0]))
    {'Rank-1': 50.0, 'Rank-5': 100.0, 'Rank-10': 100.0, 'mAP': 75.0, 'mINP': 62.5, 'metric': 62.5}
    """
    results = {f"Rank-{r}": float(cmc[min(r, len(cmc)) - 1]) * 100 for r in RANKS}
    results["mAP"] = float(np.mean(all_ap)) * 100
    results["mINP"] = float(np.mean(all_inp)) * 100
    results["metric"] = (results["mAP"] + results["Rank-1"]) / 2
    return results


class ReidEvaluator:
    """Collects (feature, pid, camid) per image with ``process`` and scores them in ``evaluate``.

    Args:
        num_query: The first ``num_query`` images (in loader order, over all ranks) are queries.
        settings: What to compute (default: the defaults of :class:`EvalSettings`).
        output_dir: With ``dataset_name``, ``evaluate`` writes its results to
            ``<output_dir>/inference/<dataset_name>.json``.
        dataset_name: Names the test set in messages and in the results file.
        draws: Gallery draws (see :mod:`~reid.evaluation.gallery_draws`): the results are the
            mean over these re-splits of the processed images (``num_query`` then only checks the
            loader); None = the processed order as it is.

    ``ReidEvaluator(cfg, num_query, output_dir=..., dataset_name=..., records=...)`` reads the
    settings from TEST (see :meth:`EvalSettings.from_config`); with TEST.GALLERY_DRAWS > 1 for a
    test set that draws its gallery, ``records`` (the loader's images) give the draws.
    """

    @configurable
    def __init__(
        self,
        num_query: int,
        settings: EvalSettings | None = None,
        output_dir: str | None = None,
        dataset_name: str | None = None,
        draws: Sequence[GalleryDraw] | None = None,
    ) -> None:
        if num_query < 1:
            raise InvalidArgument(
                "num_query",
                f"must be >= 1 (the test loader yields queries first), got {num_query}",
            )
        self.num_query = num_query
        self.settings = settings if settings is not None else EvalSettings()
        self.output_dir = output_dir
        self.dataset_name = dataset_name
        self._label = dataset_name or "test set"
        self.draws = list(draws) if draws else []
        self.draw_results: list[dict[str, float]] = []
        self._features: list[torch.Tensor] = []
        self._pids: list[torch.Tensor] = []
        self._camids: list[torch.Tensor] = []
        self._device: torch.device | None = None

    @classmethod
    def from_config(
        cls,
        cfg: CfgNode,
        num_query: int,
        output_dir: str | None = None,
        dataset_name: str | None = None,
        records: Sequence[Record] | None = None,
    ) -> dict[str, Any]:
        """The evaluator of the test set ``dataset_name`` with the settings of TEST.

        Raises:
            ConfigError: TEST.GALLERY_DRAWS asks for draws but ``records`` are not given.
        """
        settings = EvalSettings.from_config(cfg, dataset_name)
        draws = None
        if settings.gallery_draws > 1:
            if records is None or dataset_name is None:
                raise ConfigError(
                    f"TEST.GALLERY_DRAWS {settings.gallery_draws}: averaging the gallery draws of "
                    f"{dataset_name} needs its test images (the records argument: the test "
                    f"loader's dataset.records)"
                )
            draws = gallery_draws(dataset_name, records, settings.gallery_draws)
        return {
            "num_query": num_query,
            "settings": settings,
            "output_dir": output_dir,
            "dataset_name": dataset_name,
            "draws": draws,
        }

    @property
    def num_draws(self) -> int:
        """How many gallery draws the results are the mean of (1 without draws)."""
        return max(1, len(self.draws))

    def reset(self) -> None:
        """Forget the features processed so far."""
        self._features, self._pids, self._camids = [], [], []

    def process(self, batch: Mapping[str, Any], features: torch.Tensor) -> None:
        """Keep a batch's B x D features with its targets (pids) and camids."""
        if features.dim() != 2:
            raise ValueError(
                "the model's test output must be a B x D feature matrix, got shape "
                f"{tuple(features.shape)}"
            )
        if self._device is None:
            self._device = features.device
        # Kept on the features' device: no host read per batch.
        self._features.append(features.detach().float())
        for store, key in ((self._pids, BatchKeys.TARGETS), (self._camids, BatchKeys.CAMIDS)):
            store.append(torch.as_tensor(batch[key]).detach().long().cpu().reshape(-1))

    def evaluate(self) -> dict[str, float]:
        """The metrics of everything processed (on rank 0; ``{}`` on the other ranks).

        Returns:
            See :func:`score_features`.
        """
        gathered = self.gathered()
        if gathered is None:
            return {}
        features, pids, camids = gathered
        start = time.perf_counter()
        if self.draws:
            results = self._score_draws(features, pids)
        else:
            results = score_features(features, pids, camids, self.num_query, self.settings)
        logger.info(
            "Evaluated %s (%d queries, %d gallery%s) in %.1f s",
            self._label,
            self.draws[0].num_query if self.draws else self.num_query,
            features.shape[0] - (self.draws[0].num_query if self.draws else self.num_query),
            f"; the mean of {len(self.draws)} gallery draws" if self.draws else "",
            time.perf_counter() - start,
        )
        if self.output_dir and self.dataset_name:
            path = os.path.join(self.output_dir, "inference", f"{self.dataset_name}.json")
            content: dict[str, Any] = {self.dataset_name: results}
            if self.draws:
                content["gallery_draws"] = [
                    {"seed": d.seed, **r} for d, r in zip(self.draws, self.draw_results)
                ]
            atomic_write_json(path, content)
        return results

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(features, pids, camids) of every process, on the features' device, queries first;
        ``None`` on processes other than the main one."""
        features, pids, camids = self._gather()
        if not comm.is_main_process():
            return None
        if features.shape[0] <= self.num_query:
            raise ValueError(
                f"{self._label}: {features.shape[0]} images were processed but num_query is "
                f"{self.num_query}: the test set needs query images followed by at least one "
                "gallery image"
            )
        device = self._device if self._device is not None else torch.device("cpu")
        return features.to(device), pids.to(device), camids.to(device)

    def _score_draws(self, features: torch.Tensor, pids: torch.Tensor) -> dict[str, float]:
        """The mean over the gallery draws of each metric (each draw's in ``draw_results``)."""
        expected = self.draws[0].order.numel()
        if features.shape[0] != expected:
            raise ValueError(
                f"{self._label}: {features.shape[0]} images were processed, but the gallery draws "
                f"re-split {expected} test images"
            )
        self.draw_results = []
        for draw in self.draws:
            order = draw.order.to(features.device)
            self.draw_results.append(
                score_features(
                    features[order],
                    pids[order],
                    draw.camids.to(features.device),
                    draw.num_query,
                    self.settings,
                )
            )
        return {
            key: float(np.mean([r[key] for r in self.draw_results])) for key in self.draw_results[0]
        }

    def _gather(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ranks' features in rank order (the inference sampler gives each rank a contiguous
        shard)."""
        features = torch.cat(self._features) if self._features else None
        pids = torch.cat(self._pids) if self._pids else torch.zeros(0, dtype=torch.int64)
        camids = torch.cat(self._camids) if self._camids else torch.zeros(0, dtype=torch.int64)
        if comm.get_world_size() > 1:
            # A rank without images still sends a 0 x D tensor: gather the feature size first.
            dims = comm.all_gather(
                torch.tensor([features.shape[1] if features is not None else -1])
            )
            dim = int(torch.cat(dims).max())
            if features is None:
                features = torch.zeros(0, max(dim, 0))
            features, pids, camids = (
                torch.cat(comm.all_gather(t)) for t in (features, pids, camids)
            )
        if features is None:
            raise ValueError(
                f"{self._label}: no features were processed; the test loader yielded no batch"
            )
        if not (features.shape[0] == pids.shape[0] == camids.shape[0]):
            raise ValueError(
                f"got {features.shape[0]} features for {pids.shape[0]} pids and "
                f"{camids.shape[0]} camids"
            )
        return features, pids.long(), camids.long()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def inference_on_dataset(
    model: nn.Module,
    data_loader: Iterable[Mapping[str, Any]],
    evaluator: ReidEvaluator,
    flip: bool = False,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Features of every batch (model in eval mode, no gradients), then ``evaluator.evaluate()``.

    The images go to the model's device without waiting (pinned batches copy asynchronously)
    and the features stay there until the evaluator scores them: no host read per batch.

    Args:
        model: Returns the B x D test features of a batch.
        data_loader: The test batches, queries first.
        evaluator: Collects and scores the features; reset first.
        flip: Use the mean of each image's feature and its horizontally flipped copy's. The
            batch is never modified: the flipped images go into a shallow copy of it.
        amp_dtype: Autocast dtype of the forward passes (None: full precision); the features
            are scored in float32.
        channels_last: Give the model channels-last images (for a channels-last model).

    Returns:
        The evaluator's results.
    """
    evaluator.reset()
    start = time.perf_counter()
    device = next(model.parameters()).device
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    with _eval_mode(model), torch.no_grad(), autocast:
        for batch in data_loader:
            batch = dict(batch)
            images = batch[BatchKeys.IMAGES].to(device, non_blocking=True)
            batch[BatchKeys.IMAGES] = images.contiguous(memory_format=memory_format)
            features = model(batch)
            if flip:
                flipped = dict(batch)
                flipped_images = torch.flip(batch[BatchKeys.IMAGES], dims=[3])
                flipped[BatchKeys.IMAGES] = flipped_images.contiguous(memory_format=memory_format)
                features = (features.float() + model(flipped).float()) / 2
            evaluator.process(batch, features)
    logger.info("Extracted test features in %.1f s", time.perf_counter() - start)
    return evaluator.evaluate()


def format_results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A pipe table, one row per test set, one column per metric (percent, 2 decimals).

    Args:
        results: Test set -> metric -> value; a metric a set lacks shows "-".

    >>> print(format_results_table({"Market1501": {"Rank-1": 94.123, "mAP": 85.0}}))
    | Dataset    | Rank-1 |   mAP |
    |:-----------|-------:|------:|
    | Market1501 |  94.12 | 85.00 |
    """
    if not results:
        raise ValueError("format_results_table needs the results of at least one test set")
    columns: list[str] = []
    for metrics in results.values():
        columns.extend(k for k in metrics if k not in columns)
    header = ["Dataset"] + columns
    rows = [
        [str(name)] + [_cell(metrics.get(k)) for k in columns] for name, metrics in results.items()
    ]
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    rule = "|".join(
        (":" + "-" * (w + 1)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
    )
    lines = [_table_row(header, widths), f"|{rule}|"]
    lines.extend(_table_row(row, widths) for row in rows)
    return "\n".join(lines)


def _table_row(cells: list[str], widths: list[int]) -> str:
    """Cells padded to their column's width: the first left-aligned, the others right-aligned."""
    padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "| " + " | ".join(padded) + " |"


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.2f}"
