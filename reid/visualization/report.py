"""Rank lists and figures of every test set, written to a folder with one ``index.html``.

What a call of :func:`visualize_test_sets` writes into its output folder::

    index.html                      every figure and rank list below, relative links
    <TestSet>/cmc.png               the metric's CMC curve
    <TestSet>/distances.png         positive / negative pair distance histograms
    <TestSet>/roc.png               TPR against FPR (RocAccumulator's points)
    <TestSet>/curves.json           the plotted values and the metrics
    <TestSet>/rank_lists.json       the drawn rank lists: query, items, ranks, distances, matches
    <TestSet>/ranklists/NNN_qQQQQQ.png  one picture per drawn query (NNN = place in the order)

The features come from the model as the evaluator extracts them (``inference_on_dataset`` with
TEST.FLIP), and :class:`VisualizingEvaluator` scores them as ``ReidEvaluator`` does (same
settings, same results), keeping what the pictures need. TEST.VISUALIZE holds the options; the
trainer draws them after training when TEST.VISUALIZE.ENABLED is set, ``tools/visualize.py`` for
any checkpoint.
"""

from __future__ import annotations

import html
import logging
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from reid.config.schema import (
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
    declare,
)
from reid.data.build import build_reid_test_loader
from reid.evaluation.evaluator import EvalSettings, ReidEvaluator, inference_on_dataset
from reid.structures import BatchKeys
from reid.utils import comm
from reid.utils.file_io import atomic_write_json, atomic_write_text

from .analysis import ORDERS, RankingAnalysis, analyze_ranking, common_bins
from .ranklist import (
    MATCH_COLOUR,
    MISMATCH_COLOUR,
    QUERY_COLOUR,
    RankListItem,
    RankListLayout,
    draw_rank_list,
    save_png,
)

__all__ = [
    "VISUALIZE_CONFIG",
    "SetReport",
    "VisualizeOptions",
    "VisualizingEvaluator",
    "check_visualize_config",
    "visualize_test_sets",
    "write_index",
]

logger = logging.getLogger(__name__)

VISUALIZE_CONFIG = declare(
    ConfigBlock(
        "TEST.VISUALIZE",
        "Rank lists and figures of the test sets (reid/visualization/; tools/visualize.py).",
        {
            "ENABLED": Key(
                False,
                "After training and its final evaluation, draw rank lists, CMC, distance "
                "histograms and ROC of every test set into OUTPUT_DIR/visualize/ (index.html).",
            ),
            "NUM_QUERIES": Key(
                20,
                "Rank lists drawn per test set, in ORDER; 0 = the figures only. Queries the "
                "metric skips (no relevant gallery image) are never drawn.",
            ),
            "ORDER": Key(
                "worst",
                'Which queries: by the metric\'s AP, "worst" (lowest first) or "best" '
                '(highest first), or "random" (a shuffle seeded with SEED).',
            ),
            "TOP_K": Key(10, "Gallery images per rank list."),
            "MAX_RANK": Key(50, "Ranks shown by the CMC curve (at most the gallery size)."),
            "SEED": Key(0, 'Seed of the "random" order.'),
            "IMAGE_SIZE": Key(
                [128, 64], "[height, width] of every image in the rank-list pictures."
            ),
        },
    )
)


class VisualizeOptions:
    """What to draw (TEST.VISUALIZE but ENABLED).

    Args:
        num_queries: Rank lists per test set (0: figures only).
        order: "worst", "best" or "random".
        top_k: Gallery images per rank list.
        max_rank: Ranks of the CMC curve.
        seed: Seed of the random order.
        image_size: (height, width) of each image in a rank list.
    """

    config_block = VISUALIZE_CONFIG

    @configurable
    def __init__(
        self,
        num_queries: int = 20,
        order: str = "worst",
        top_k: int = 10,
        max_rank: int = 50,
        seed: int = 0,
        image_size: Sequence[int] = (128, 64),
    ) -> None:
        if num_queries < 0:
            raise InvalidArgument("num_queries", f"must be >= 0, got {num_queries}")
        if order not in ORDERS:
            raise InvalidArgument("order", f"must be one of {', '.join(ORDERS)}, got {order!r}")
        for name, value in (("top_k", top_k), ("max_rank", max_rank)):
            if value < 1:
                raise InvalidArgument(name, f"must be >= 1, got {value}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise InvalidArgument(
                "image_size", f"must be [height, width], both >= 1, got {list(image_size)}"
            )
        self.num_queries = num_queries
        self.order = order
        self.top_k = top_k
        self.max_rank = max_rank
        self.seed = seed
        self.image_size = (int(image_size[0]), int(image_size[1]))

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict[str, Any]:
        """The options of TEST.VISUALIZE."""
        return VISUALIZE_CONFIG.arguments(cfg, skip=("ENABLED",))

    @property
    def layout(self) -> RankListLayout:
        """The rank-list pictures' layout."""
        return RankListLayout(image_size=self.image_size, num_items=self.top_k)


def check_visualize_config(cfg: CfgNode) -> VisualizeOptions:
    """The options of TEST.VISUALIZE, checked; ENABLED needs a test set.

    Raises:
        ConfigError: A key has a value that cannot be drawn (the message names it).
    """
    options = VisualizeOptions(cfg)
    if cfg.TEST.VISUALIZE.ENABLED and not cfg.DATASETS.TESTS:
        raise ConfigError(
            "TEST.VISUALIZE.ENABLED draws the test sets, but DATASETS.TESTS names none"
        )
    return options


@dataclass
class RankListEntry:
    """A drawn rank list, as index.html lists it."""

    place: int
    query: int
    path: str
    pid: int
    camid: int
    ap: float
    first_match: int | None
    num_relevant: int
    num_dropped: int
    image: str  # relative to the test set's folder


@dataclass
class SetReport:
    """What was written for one test set (paths relative to its folder)."""

    name: str
    folder: str
    results: dict[str, float]
    num_query: int
    num_gallery: int
    num_valid: int
    metric: str
    options: VisualizeOptions
    figures: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    entries: list[RankListEntry] = field(default_factory=list)


FIGURES = {
    "cmc.png": "CMC curve",
    "distances.png": "distance histograms",
    "roc.png": "ROC curve",
}


def describe_distance(settings: EvalSettings) -> str:
    """The distance the metric ranks by, in words.

    >>> describe_distance(EvalSettings(metric="euclidean", aqe=True, rerank=True))
    'euclidean, after query expansion, k-reciprocal re-ranked'
    """
    parts = [settings.metric]
    if settings.aqe:
        parts.append("after query expansion")
    if settings.rerank:
        parts.append("k-reciprocal re-ranked")
    return ", ".join(parts)


def _caption_distance(value: float) -> str:
    return f"{value:.4g}"


def write_test_set(
    folder: str,
    name: str,
    analysis: RankingAnalysis,
    paths: Sequence[str],
    pids: np.ndarray,
    camids: np.ndarray,
    num_query: int,
    metric: str,
    options: VisualizeOptions,
) -> SetReport:
    """Figures, rank-list pictures and their JSON for one test set, into ``folder``.

    Args:
        folder: Where to write (created).
        name: The test set's name (titles).
        analysis: The metric's analysis of the test set.
        paths, pids, camids: Of every image, queries first.
        num_query: How many images are queries.
        metric: The distance in words (:func:`describe_distance`), for the axis label.
        options: What to draw.
    """
    from .figures import (  # noqa: PLC0415  (matplotlib is imported when drawing)
        HISTOGRAM_BINS,
        plot_cmc,
        plot_distance_histograms,
        plot_roc,
        save_figure,
    )

    os.makedirs(folder, exist_ok=True)
    report = SetReport(
        name=name,
        folder=folder,
        results=analysis.results,
        num_query=num_query,
        num_gallery=len(paths) - num_query,
        num_valid=int(analysis.valid.sum()),
        metric=metric,
        options=options,
    )
    figures = {
        "cmc.png": plot_cmc(analysis.cmc, f"{name}: CMC"),
        "distances.png": plot_distance_histograms(
            analysis.positives, analysis.negatives, metric, f"{name}: pair distances"
        ),
        "roc.png": plot_roc(
            analysis.roc_fprs, analysis.roc_tprs, analysis.roc_reported, f"{name}: ROC"
        ),
    }
    for file_name, fig in figures.items():
        save_figure(fig, os.path.join(folder, file_name))
        report.figures[file_name] = FIGURES[file_name]
    edges, (pos, neg) = common_bins([analysis.positives, analysis.negatives], HISTOGRAM_BINS)
    atomic_write_json(
        os.path.join(folder, "curves.json"),
        {
            "dataset": name,
            "results": analysis.results,
            "cmc": {
                "rank": list(range(1, analysis.cmc.shape[0] + 1)),
                "rate": analysis.cmc.tolist(),
            },
            "roc": {"fpr": list(analysis.roc_fprs), "tpr": analysis.roc_tprs},
            "distances": {
                "metric": metric,
                "edges": edges.tolist(),
                "positive": pos.tolist(),
                "negative": neg.tolist(),
            },
        },
    )
    report.data["curves.json"] = "plotted values"
    _write_rank_lists(report, analysis, paths, pids, camids, num_query)
    return report


def _write_rank_lists(
    report: SetReport,
    analysis: RankingAnalysis,
    paths: Sequence[str],
    pids: np.ndarray,
    camids: np.ndarray,
    num_query: int,
) -> None:
    options = report.options
    layout = options.layout
    lists = analysis.rank_lists
    chosen = analysis.query_order(options.order, options.num_queries, options.seed)
    records = []
    for place, q in enumerate(chosen.tolist(), start=1):
        ranked_json, ranked_items = [], []
        first_match = None
        for position in range(options.top_k):
            col = int(lists.columns[q, position])
            if col < 0:
                break
            g = num_query + col
            match = bool(lists.matches[q, position])
            distance = float(lists.distances[q, position])
            if match and first_match is None:
                first_match = position + 1
            ranked_json.append(
                {
                    "rank": position + 1,
                    "gallery_index": col,
                    "path": paths[g],
                    "pid": int(pids[g]),
                    "camid": int(camids[g]),
                    "distance": distance,
                    "match": match,
                }
            )
            ranked_items.append(
                RankListItem(
                    paths[g],
                    MATCH_COLOUR if match else MISMATCH_COLOUR,
                    (
                        f"#{position + 1}",
                        _caption_distance(distance),
                        f"id {pids[g]} cam {camids[g]}",
                    ),
                )
            )
        ap = float(analysis.ap[q])
        query_item = RankListItem(
            paths[q],
            QUERY_COLOUR,
            ("query", f"AP {ap * 100:.1f} %", f"id {pids[q]} cam {camids[q]}"),
        )
        image = posixpath.join("ranklists", f"{place:03d}_q{q:06d}.png")
        save_png(
            draw_rank_list(query_item, ranked_items, layout),
            os.path.join(report.folder, *image.split("/")),
        )
        entry = RankListEntry(
            place=place,
            query=q,
            path=paths[q],
            pid=int(pids[q]),
            camid=int(camids[q]),
            ap=ap,
            first_match=first_match,
            num_relevant=int(lists.num_relevant[q]),
            num_dropped=int(lists.num_dropped[q]),
            image=image,
        )
        report.entries.append(entry)
        records.append(
            {
                "place": place,
                "query_index": q,
                "path": entry.path,
                "pid": entry.pid,
                "camid": entry.camid,
                "ap": ap,
                "first_match_rank": first_match,
                "num_relevant": entry.num_relevant,
                "num_same_camera_not_ranked": entry.num_dropped,
                "image": image,
                "ranked": ranked_json,
            }
        )
    atomic_write_json(
        os.path.join(report.folder, "rank_lists.json"),
        {
            "dataset": report.name,
            "order": options.order,
            "top_k": options.top_k,
            "metric": report.metric,
            "num_valid_queries": report.num_valid,
            "queries": records,
        },
    )
    report.data["rank_lists.json"] = "rank lists"


class VisualizingEvaluator(ReidEvaluator):
    """Scores a test set as :class:`ReidEvaluator` does and writes its rank lists and figures.

    Args:
        num_query: The first ``num_query`` images are queries.
        folder: Where the test set's pictures go.
        options: What to draw.
        settings: How to score (the evaluator's TEST settings).
        dataset_name: The test set's name.

    The batches must carry the image paths (``BatchKeys.PATHS``). ``evaluate`` returns the
    metrics (equal to ``ReidEvaluator``'s) and sets ``report`` on the main process.
    """

    def __init__(
        self,
        num_query: int,
        folder: str,
        options: VisualizeOptions,
        settings: EvalSettings | None = None,
        dataset_name: str | None = None,
    ) -> None:
        super().__init__(num_query, settings=settings, dataset_name=dataset_name)
        self.folder = folder
        self.options = options
        self.report: SetReport | None = None
        self._paths: list[str] = []

    def reset(self) -> None:
        super().reset()
        self._paths = []

    def process(self, batch: Mapping[str, Any], features: torch.Tensor) -> None:
        """Keep a batch's features, targets, camids and image paths."""
        if BatchKeys.PATHS not in batch:
            raise ValueError(
                f"the test batches carry no image paths (key {BatchKeys.PATHS!r}); rank lists "
                "need them"
            )
        super().process(batch, features)
        self._paths.extend(str(p) for p in batch[BatchKeys.PATHS])

    def evaluate(self) -> dict[str, float]:
        """The metrics; the main process also writes the pictures (see ``report``)."""
        paths = self._paths
        if comm.get_world_size() > 1:
            shards: list[list[str] | None] = [None] * comm.get_world_size()
            torch.distributed.all_gather_object(shards, self._paths)
            paths = [p for shard in shards for p in (shard or [])]
        gathered = self.gathered()
        if gathered is None:
            return {}
        features, pids, camids = gathered
        if len(paths) != features.shape[0]:
            raise ValueError(f"got {len(paths)} image paths for {features.shape[0]} features")
        start = time.perf_counter()
        analysis = analyze_ranking(
            features,
            pids,
            camids,
            self.num_query,
            self.settings,
            top_k=self.options.top_k,
            max_rank=self.options.max_rank,
        )
        self.report = write_test_set(
            self.folder,
            self.dataset_name or "test set",
            analysis,
            paths,
            pids.cpu().numpy(),
            camids.cpu().numpy(),
            self.num_query,
            describe_distance(self.settings),
            self.options,
        )
        logger.info(
            "Drew %d rank lists and 3 figures of %s into %s in %.1f s",
            len(self.report.entries),
            self.dataset_name or "the test set",
            self.folder,
            time.perf_counter() - start,
        )
        return analysis.results


def _href(path: str) -> str:
    return html.escape(quote(path), quote=True)


def _metrics_table(results: Mapping[str, float]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in results)
    cells = "".join(f"<td>{v:.2f}</td>" for v in results.values())
    return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"


_ORDER_TEXT = {
    "worst": "lowest AP first",
    "best": "highest AP first",
    "random": "in random order",
}

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 8px; text-align: right; }
.figures img { width: 32%; min-width: 320px; }
figure { margin: 0 0 1.2em 0; }
figcaption { font-size: 90%; }
.query { color: rgb(32, 96, 224); } .match { color: rgb(0, 150, 0); }
.mismatch { color: rgb(224, 0, 0); }
"""


def _entry_html(report: SetReport, entry: RankListEntry) -> str:
    rel = posixpath.join(report.name, entry.image)
    k = report.options.top_k
    first = (
        f"first match at rank {entry.first_match}"
        if entry.first_match is not None
        else f"no match in the first {k}"
    )
    dropped = (
        f", {entry.num_dropped} of its identity from the same camera not ranked"
        if entry.num_dropped
        else ""
    )
    return (
        f'<figure><img src="{_href(rel)}" alt="rank list of query {entry.query}">'
        f"<figcaption>{entry.place}. query {entry.query} "
        f"<code>{html.escape(os.path.basename(entry.path))}</code>: pid {entry.pid}, "
        f"camid {entry.camid}, AP {entry.ap * 100:.1f} %, {first}; "
        f"{entry.num_relevant} relevant{dropped}</figcaption></figure>"
    )


def _anchor(place: int, name: str) -> str:
    """An HTML id for the ``place``-th test set (letters, digits, '-' and '_' only)."""
    return f"set{place}-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _section_html(report: SetReport, anchor: str) -> str:
    name = html.escape(report.name)
    figures = "".join(
        f'<a href="{_href(posixpath.join(report.name, f))}">'
        f'<img src="{_href(posixpath.join(report.name, f))}" alt="{html.escape(alt)}"></a>'
        for f, alt in report.figures.items()
    )
    data = ", ".join(
        f'<a href="{_href(posixpath.join(report.name, f))}">{html.escape(f)}</a> '
        f"({html.escape(what)})"
        for f, what in report.data.items()
    )
    skipped = report.num_query - report.num_valid
    options = report.options
    lists = (
        f"<h3>{len(report.entries)} rank lists, {_ORDER_TEXT[options.order]}</h3>"
        f"<p>Of {report.num_valid} queries the metric scores ({skipped} skipped: no gallery "
        f"image of their identity from another camera); top {options.top_k} of "
        f"{report.num_gallery} gallery images.</p>"
        if options.num_queries
        else "<p>No rank lists drawn (TEST.VISUALIZE.NUM_QUERIES 0).</p>"
    )
    return (
        f'<section id="{anchor}"><h2>{name}</h2>'
        f"<p>Distance: {html.escape(report.metric)}.</p>{_metrics_table(report.results)}"
        f'<div class="figures">{figures}</div><p>Data: {data}.</p>{lists}'
        + "".join(_entry_html(report, e) for e in report.entries)
        + "</section>"
    )


def write_index(output_dir: str, reports: Sequence[SetReport], source: str = "") -> str:
    """Write ``output_dir/index.html`` showing every report's figures and rank lists.

    Args:
        output_dir: The folder holding the test sets' folders.
        reports: One per test set, each written into ``output_dir/<name>``.
        source: What was evaluated (e.g. the weights file), shown at the top.

    Returns:
        The path of index.html.
    """
    anchors = [_anchor(i, r.name) for i, r in enumerate(reports)]
    nav = " | ".join(f'<a href="#{a}">{html.escape(r.name)}</a>' for a, r in zip(anchors, reports))
    legend = (
        '<p>Frames: <span class="query">blue</span> the query, <span class="match">green</span> '
        'the query\'s identity, <span class="mismatch">red</span> another identity. Under each '
        "image: its rank, its distance (the one the metric ranks by), its pid and camid "
        "(0-based: camera c1 of a Market-style name is cam 0). As in the metric, gallery images of "
        "the query's identity taken by the query's camera get no rank and are not shown (their "
        "number is in the caption); junk images are dropped when the dataset is read; "
        "distractors are other identities.</p>"
    )
    source_html = f"<p>Model: <code>{html.escape(source)}</code></p>" if source else ""
    body = "".join(_section_html(r, a) for r, a in zip(reports, anchors))
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Rank lists and figures</title><style>{_STYLE}</style></head>\n<body>"
        f"<h1>Rank lists and figures</h1>{source_html}{legend}<p>{nav}</p>{body}"
        "</body></html>\n"
    )
    path = os.path.join(output_dir, "index.html")
    atomic_write_text(path, text)
    return path


TestLoaderBuilder = Callable[[CfgNode, str], tuple[DataLoader, int]]


def visualize_test_sets(
    cfg: CfgNode,
    model: nn.Module,
    output_dir: str,
    options: VisualizeOptions | None = None,
    build_test_loader: TestLoaderBuilder = build_reid_test_loader,
    source: str = "",
) -> dict[str, dict[str, float]]:
    """Rank lists and figures of every DATASETS.TESTS set into ``output_dir``, and index.html.

    Every process takes part in the feature extraction; the main one draws.

    Args:
        cfg: The config (DATASETS.TESTS, TEST.*, INPUT.*).
        model: The model to evaluate.
        output_dir: Where to write (see the module's docstring).
        options: What to draw (default: TEST.VISUALIZE).
        build_test_loader: (cfg, test set) -> (loader, number of queries).
        source: What is evaluated, shown at the top of index.html.

    Returns:
        {test set: metrics} as the evaluation reports them (empty on other processes).
    """
    options = options if options is not None else VisualizeOptions(cfg)
    if not cfg.DATASETS.TESTS:
        raise ConfigError("DATASETS.TESTS names no test set: there is nothing to draw")
    results: dict[str, dict[str, float]] = {}
    reports = []
    for name in cfg.DATASETS.TESTS:
        loader, num_query = build_test_loader(cfg, name)
        evaluator = VisualizingEvaluator(
            num_query,
            os.path.join(output_dir, name),
            options,
            settings=EvalSettings.from_config(cfg, name),
            dataset_name=name,
        )
        metrics = inference_on_dataset(model, loader, evaluator, flip=cfg.TEST.FLIP.ENABLED)
        if evaluator.report is not None:
            results[name] = metrics
            reports.append(evaluator.report)
    if comm.is_main_process():
        path = write_index(output_dir, reports, source)
        logger.info("Rank lists and figures: %s", path)
    return results
