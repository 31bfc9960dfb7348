"""The figures plot exactly the metric's values: CMC = evaluate_rank's, ROC = RocAccumulator's."""

import numpy as np
import pytest
import torch
from PIL import Image

from reid.evaluation import (
    EvalSettings,
    GalleryIndex,
    RocAccumulator,
    compute_distmat,
    evaluate_rank,
)
from reid.visualization.analysis import DistanceHistogram, analyze_ranking, common_bins
from reid.visualization.figures import (
    plot_cmc,
    plot_distance_histograms,
    plot_roc,
    save_figure,
)


def small_case(seed=0, num_q=10, num_g=30):
    rng = np.random.default_rng(seed)
    features = torch.from_numpy(rng.normal(size=(num_q + num_g, 8)).astype(np.float32))
    pids = torch.from_numpy(rng.integers(0, 4, num_q + num_g))
    camids = torch.from_numpy(rng.integers(0, 3, num_q + num_g))
    return features, pids, camids, num_q


def test_cmc_figure_plots_evaluate_ranks_cmc(tmp_path):
    features, pids, camids, nq = small_case()
    analysis = analyze_ranking(features, pids, camids, nq, max_rank=20)
    distmat = compute_distmat(features[:nq], features[nq:])
    cmc, _, _ = evaluate_rank(distmat, pids[:nq], pids[nq:], camids[:nq], camids[nq:], 20)
    fig = plot_cmc(analysis.cmc, "CMC")
    (line,) = fig.axes[0].get_lines()
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 21))
    np.testing.assert_array_equal(line.get_ydata(), cmc * 100)
    assert line.get_label().startswith(f"Rank-1 {cmc[0] * 100:.1f} %")
    save_figure(fig, str(tmp_path / "cmc.png"))
    with Image.open(tmp_path / "cmc.png") as image:
        assert image.format == "PNG" and image.size == (640, 400)


def test_roc_figure_plots_the_roc_accumulators_points(tmp_path):
    features, pids, camids, nq = small_case(1)
    settings = EvalSettings(roc=True, roc_fprs=(0.01, 0.2))
    analysis = analyze_ranking(features, pids, camids, nq, settings)
    roc = RocAccumulator(GalleryIndex(pids[nq:], camids[nq:]), pids[:nq], analysis.roc_fprs)
    roc.add(compute_distmat(features[:nq], features[nq:]), pids[:nq], camids[:nq])
    assert analysis.roc_reported == settings.roc_fprs
    fig = plot_roc(analysis.roc_fprs, analysis.roc_tprs, marked=analysis.roc_reported)
    curve, *points = fig.axes[0].get_lines()
    np.testing.assert_array_equal(curve.get_xdata(), analysis.roc_fprs)
    np.testing.assert_array_equal(curve.get_ydata(), np.array(roc.tprs()) * 100)
    # The configured rates are marked at the values the evaluation reports.
    assert [p.get_xdata()[0] for p in points] == [0.01, 0.2]
    assert [p.get_ydata()[0] for p in points] == [
        analysis.results["TPR@FPR=1e-02"],
        analysis.results["TPR@FPR=2e-01"],
    ]
    assert fig.axes[0].get_xscale() == "log"
    save_figure(fig, str(tmp_path / "roc.png"))
    with Image.open(tmp_path / "roc.png") as image:
        assert image.size == (640, 400)


def test_histogram_figure_plots_densities_of_the_exact_counts():
    positives, negatives = DistanceHistogram(), DistanceHistogram()
    pos = np.array([0.1, 0.15, 0.2, 0.2])
    neg = np.linspace(0.3, 1.7, 200)
    positives.add(torch.from_numpy(pos))
    negatives.add(torch.from_numpy(neg))
    fig = plot_distance_histograms(positives, negatives, "cosine", max_bins=20)
    steps = fig.axes[0].patches
    assert [s.get_label() for s in steps] == ["positive pairs (4)", "negative pairs (200)"]
    edges, _ = common_bins([positives, negatives], 20)
    width = edges[1] - edges[0]
    for step, values in zip(steps, (pos, neg)):
        density, step_edges, _ = step.get_data()
        np.testing.assert_array_equal(step_edges, edges)
        np.testing.assert_allclose(
            density, np.histogram(values, edges)[0] / (values.size * width), rtol=1e-12
        )
        assert np.sum(density * width) == pytest.approx(1.0, abs=1e-12)
    assert fig.axes[0].get_xlabel() == "distance (cosine)"


def test_empty_figures_say_so():
    fig = plot_distance_histograms(DistanceHistogram(), DistanceHistogram(), "cosine")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no pairs"]
    fig = plot_roc([0.5, 1.0], [float("nan"), float("nan")])
    assert [t.get_text() for t in fig.axes[0].texts] == ["no positive pairs"]
