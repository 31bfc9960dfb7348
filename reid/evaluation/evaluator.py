"""The ReID evaluator: features of query and gallery images in, CMC / mAP / mINP (percent) out.

``inference_on_dataset`` runs the model in eval mode over a test loader (query images first,
then gallery) and feeds the features to a ``ReidEvaluator``. ``evaluate`` gathers the features
of all ranks (metrics are computed on rank 0; other ranks get ``{}``), optionally applies alpha
query expansion, computes distances chunk by chunk (optionally k-reciprocal re-ranked) and
streams each chunk into the rank metrics, so that the query x gallery matrix is never held at
once. Results are percentages keyed "Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "metric"
(= (mAP + Rank-1) / 2) and, with TEST.ROC.ENABLED, "TPR@FPR=1e-04" and so on.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key, declare
from reid.utils import comm
from reid.utils.file_io import atomic_write_json

from .distance import Distance, build_distance
from .query_expansion import alpha_query_expansion
from .rank import RankAccumulator, auto_chunk_size, intra_op_threads, iter_chunks
from .rank_cuhk03 import SingleGalleryShotCMC
from .rerank import FeatureDistances, rerank_chunks
from .roc import RocAccumulator

__all__ = ["ReidEvaluator", "inference_on_dataset", "format_results_table"]

logger = logging.getLogger(__name__)


TEST_CONFIG = declare(
    ConfigBlock(
        "TEST",
        "Evaluation: distance, flip averaging, chunking, AP variant.",
        {
            "METRIC": Key(
                "cosine",
                (
                    'Distance (reid/evaluation/distance.py): "cosine" = 1 - cos of L2-normalised '
                    'features; "euclidean" = SQUARED Euclidean distance (fastreid\'s convention; '
                    "same ranking as Euclidean)."
                ),
            ),
            "FLIP.ENABLED": Key(
                False,
                "Average each image's feature with its horizontally flipped copy's.",
            ),
            "CHUNK_SIZE": Key(
                0,
                (
                    "Queries per chunk for distances, ranking and re-ranking; 0 = chosen from the"
                    " gallery size (about 4M distances per chunk on CPU, 16M on CUDA), which "
                    "bounds the extra memory."
                ),
            ),
            "METRIC_THREADS": Key(
                1,
                (
                    "torch CPU threads for the ranking metric's passes (distances keep torch's "
                    "setting); 0 = torch's setting. One thread avoids the stalls of "
                    "multi-threaded short passes on shared cores."
                ),
            ),
            "OFFICIAL_MARKET_AP": Key(
                False,
                (
                    "AP as the Market-1501 devkit computes it (trapezoid rule) instead of the "
                    "non-interpolated AP of torchreid / fastreid (the default, used by the "
                    "papers' tables)."
                ),
            ),
        },
    )
)


RANKS = (1, 5, 10)


class ReidEvaluator:
    """Collects (feature, pid, camid) per image with ``process`` and scores them in ``evaluate``.

    ``num_query``: the first ``num_query`` images (in loader order, over all ranks) are queries.
    ``dataset_name``: names the set in messages, decides whether the CUHK03 classic metric
    applies (TEST.CUHK03_CLASSIC: names containing "cuhk03") and, with ``output_dir``, makes
    ``evaluate`` write its results to ``<output_dir>/inference/<dataset_name>.json``.
    """

    def __init__(
        self,
        cfg: CfgNode,
        num_query: int,
        output_dir: str | None = None,
        dataset_name: str | None = None,
    ) -> None:
        if num_query < 1:
            raise ValueError(
                f"num_query must be >= 1 (the test loader yields queries first), got {num_query}"
            )
        self.cfg = cfg
        self.num_query = num_query
        self.output_dir = output_dir
        self.dataset_name = dataset_name
        self._label = dataset_name or "test set"
        self._features: list[torch.Tensor] = []
        self._pids: list[torch.Tensor] = []
        self._camids: list[torch.Tensor] = []
        self._device: torch.device | None = None

    def reset(self) -> None:
        self._features, self._pids, self._camids = [], [], []

    def process(self, batch: Mapping[str, Any], features: torch.Tensor) -> None:
        if features.dim() != 2:
            raise ValueError(
                f"the model's test output must be a B x D feature matrix, got shape {tuple(features.shape)}"
            )
        if self._device is None:
            self._device = features.device
        self._features.append(features.detach().float().cpu())
        self._pids.append(torch.as_tensor(batch["targets"]).detach().long().cpu().reshape(-1))
        self._camids.append(torch.as_tensor(batch["camids"]).detach().long().cpu().reshape(-1))

    def _gather(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ranks' features in rank order (the inference sampler gives each rank a contiguous shard)."""
        features = torch.cat(self._features) if self._features else None
        pids = torch.cat(self._pids) if self._pids else torch.zeros(0, dtype=torch.int64)
        camids = torch.cat(self._camids) if self._camids else torch.zeros(0, dtype=torch.int64)
        if comm.get_world_size() > 1:
            # A rank without images still sends a 0 x D tensor: gather the feature size first.
            dim = torch.tensor([features.shape[1] if features is not None else -1])
            dim = int(torch.cat(comm.all_gather(dim)).max())
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
                f"got {features.shape[0]} features for {pids.shape[0]} pids and {camids.shape[0]} camids"
            )
        return features, pids.long(), camids.long()

    def evaluate(self) -> dict[str, float]:
        features, pids, camids = self._gather()
        if not comm.is_main_process():
            return {}
        if features.shape[0] <= self.num_query:
            raise ValueError(
                f"{self._label}: {features.shape[0]} images were processed but num_query is {self.num_query}: "
                "the test set needs query images followed by at least one gallery image"
            )
        start = time.perf_counter()
        device = self._device if self._device is not None else torch.device("cpu")
        results = score_features(
            self.cfg,
            features.to(device),
            pids.to(device),
            camids.to(device),
            self.num_query,
            self.dataset_name or "",
        )
        seconds = time.perf_counter() - start
        num_gallery = features.shape[0] - self.num_query
        logger.info(
            "Evaluated %s (%d queries, %d gallery) in %.1f s",
            self._label,
            self.num_query,
            num_gallery,
            seconds,
        )
        if self.output_dir and self.dataset_name:
            path = os.path.join(self.output_dir, "inference", f"{self.dataset_name}.json")
            atomic_write_json(path, {self.dataset_name: results})
        return results


def _distance_chunks(
    cfg: CfgNode, qf: torch.Tensor, gf: torch.Tensor, distance: Distance
) -> Iterator[tuple[int, int, torch.Tensor]]:
    chunk = cfg.TEST.CHUNK_SIZE
    if cfg.TEST.RERANK.ENABLED:
        r = cfg.TEST.RERANK
        yield from rerank_chunks(
            FeatureDistances(qf, gf, distance), r.K1, r.K2, r.LAMBDA, chunk or None
        )
        return
    step = chunk or auto_chunk_size(gf.shape[0], qf.device)
    for start, end in iter_chunks(qf.shape[0], step):
        yield start, end, distance.pairwise(qf[start:end], gf)


def score_features(
    cfg: CfgNode,
    features: torch.Tensor,
    pids: torch.Tensor,
    camids: torch.Tensor,
    num_query: int,
    dataset_name: str = "",
) -> dict[str, float]:
    """The metrics of the TEST section for features of queries (first ``num_query``) then gallery."""
    t = cfg.TEST
    qf, gf = features[:num_query], features[num_query:]
    q_pids, g_pids = pids[:num_query], pids[num_query:]
    q_camids, g_camids = camids[:num_query], camids[num_query:]
    if t.AQE.ENABLED:
        qf, gf = alpha_query_expansion(
            qf, gf, t.AQE.QE_TIME, t.AQE.QE_K, t.AQE.ALPHA, t.CHUNK_SIZE or None
        )
    distance = build_distance(t.METRIC)
    qf, gf = distance.prepare(qf), distance.prepare(gf)
    ranking = RankAccumulator(g_pids, g_camids)
    roc = RocAccumulator(ranking.gallery, q_pids, t.ROC.FPRS) if t.ROC.ENABLED else None
    classic = None
    if t.CUHK03_CLASSIC.ENABLED and "cuhk03" in dataset_name.lower():
        classic = SingleGalleryShotCMC(
            g_pids, g_camids, num_query, t.CUHK03_CLASSIC.REPEATS, t.CUHK03_CLASSIC.SEED
        )
    for start, end, dist in _distance_chunks(cfg, qf, gf, distance):
        with intra_op_threads(t.METRIC_THREADS, dist.device):
            ranking.add(dist, q_pids[start:end], q_camids[start:end])
            if roc is not None:
                roc.add(dist, q_pids[start:end], q_camids[start:end])
            if classic is not None:
                classic.add(start, dist, q_pids[start:end], q_camids[start:end])
    cmc, all_ap, all_inp = ranking.compute(max(RANKS), official_ap=t.OFFICIAL_MARKET_AP)
    if classic is not None:
        cmc = classic.compute(max(RANKS))
    results: dict[str, float] = OrderedDict()
    for r in RANKS:
        results[f"Rank-{r}"] = float(cmc[min(r, len(cmc)) - 1]) * 100
    results["mAP"] = float(np.mean(all_ap)) * 100
    results["mINP"] = float(np.mean(all_inp)) * 100
    results["metric"] = (results["mAP"] + results["Rank-1"]) / 2
    if roc is not None:
        results.update({key: value * 100 for key, value in roc.compute().items()})
    return results


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
) -> dict[str, float]:
    """Features of every batch (model in eval mode, no gradients), then ``evaluator.evaluate()``.

    With ``flip`` the feature is the mean of the image's and its horizontally flipped copy's.
    The batch is never modified: the flipped images go into a shallow copy of it.
    """
    evaluator.reset()
    start = time.perf_counter()
    with _eval_mode(model), torch.no_grad():
        for batch in data_loader:
            features = model(batch)
            if flip:
                flipped = dict(batch)
                flipped["images"] = torch.flip(batch["images"], dims=[3])
                features = (features + model(flipped)) / 2
            evaluator.process(batch, features)
    logger.info("Extracted test features in %.1f s", time.perf_counter() - start)
    return evaluator.evaluate()


def format_results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A pipe table, one row per test set, one column per metric (percent, 2 decimals)."""
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
    lines = [
        "| "
        + " | ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))
        )
        + " |",
        "|"
        + "|".join(
            (":" + "-" * (w + 1)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
        )
        + "|",
    ]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
            + " |"
        )
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.2f}"
