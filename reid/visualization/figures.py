"""The figures of an evaluation: CMC curve, positive / negative distance histograms, ROC curve.

matplotlib's object-oriented API on the Agg backend (``FigureCanvasAgg``): no pyplot, no global
backend switch, no display needed. Each function plots exactly the values it is given (the
metric's, from :func:`reid.visualization.analysis.analyze_ranking`) and returns the Figure;
:func:`save_figure` writes it as a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reid.utils.file_io import atomic_open

from .analysis import DistanceHistogram, common_bins
from .ranklist import MATCH_COLOUR, MISMATCH_COLOUR, QUERY_COLOUR

__all__ = [
    "DPI",
    "FIGURE_SIZE",
    "HISTOGRAM_BINS",
    "plot_cmc",
    "plot_distance_histograms",
    "plot_roc",
    "save_figure",
]

FIGURE_SIZE = (6.4, 4.0)  # inches: 640 x 400 pixels at DPI
DPI = 100
HISTOGRAM_BINS = 60  # at most, shared by the two histograms


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    r, g, b = colour
    return r / 255, g / 255, b / 255


def _figure(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def plot_cmc(cmc: np.ndarray, title: str = "CMC") -> Figure:
    """The CMC curve: matching rate (percent) at ranks 1 .. len(cmc).

    Args:
        cmc: The metric's CMC (fractions), ``cmc[k]`` for rank k + 1.
        title: The figure's title.
    """
    fig, ax = _figure(title)
    ranks = np.arange(1, cmc.shape[0] + 1)
    values = np.asarray(cmc, dtype=np.float64) * 100
    label = ", ".join(f"Rank-{r} {values[r - 1]:.1f} %" for r in (1, 5, 10) if r <= len(values))
    ax.plot(ranks, values, marker="o", markersize=3, color=_rgb(QUERY_COLOUR), label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, max(2, ranks[-1]))
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    return fig


def plot_distance_histograms(
    positives: DistanceHistogram,
    negatives: DistanceHistogram,
    metric: str,
    title: str = "Distances",
    max_bins: int = HISTOGRAM_BINS,
) -> Figure:
    """The distance distributions of positive and negative pairs on shared bins (densities).

    Args:
        positives: Distances of (query, relevant item) pairs.
        negatives: Distances of (query, item of another identity) pairs.
        metric: The distance's name, for the axis.
        title: The figure's title.
        max_bins: The most bins (shared by both).
    """
    fig, ax = _figure(title)
    edges, (pos, neg) = common_bins([positives, negatives], max_bins)
    for counts, name, colour in (
        (pos, "positive pairs", MATCH_COLOUR),
        (neg, "negative pairs", MISMATCH_COLOUR),
    ):
        total = int(counts.sum())
        if total == 0:
            continue
        density = counts / (total * (edges[1] - edges[0]))
        ax.stairs(
            density,
            edges,
            fill=True,
            alpha=0.45,
            color=_rgb(colour),
            label=f"{name} ({total:,})",
        )
    if edges.shape[0] == 0:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="upper right")
    ax.set_xlabel(f"distance ({metric})")
    ax.set_ylabel("density")
    return fig


def plot_roc(
    fprs: Sequence[float],
    tprs: Sequence[float],
    marked: Sequence[float] = (),
    title: str = "ROC",
) -> Figure:
    """TPR (percent) against FPR on a log axis; the FPRs of ``marked`` get a labelled point.

    Args:
        fprs: False positive rates, ascending.
        tprs: The TPR (fraction) at each.
        marked: FPRs among ``fprs`` to label (the configured TEST.ROC.FPRS).
        title: The figure's title.
    """
    fig, ax = _figure(title)
    x = np.asarray(fprs, dtype=np.float64)
    y = np.asarray(tprs, dtype=np.float64) * 100
    ax.plot(x, y, color=_rgb(QUERY_COLOUR), drawstyle="steps-post", label="TPR")
    for f in marked:
        i = list(fprs).index(f)
        ax.plot([x[i]], [y[i]], marker="o", color=_rgb(MISMATCH_COLOUR))
        ax.annotate(
            f"{y[i]:.1f} % @ {f:.0e}", (x[i], y[i]), textcoords="offset points", xytext=(4, -12)
        )
    if np.isnan(y).all():
        ax.text(0.5, 0.5, "no positive pairs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (%)")
    ax.set_ylim(0, 100)
    return fig


def save_figure(fig: Figure, path: str) -> None:
    """Write ``fig`` to ``path`` as a PNG (Agg), atomically."""
    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI)
