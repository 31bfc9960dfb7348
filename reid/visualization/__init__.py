"""Rank lists as pictures and the figures of an evaluation (CMC, distance histograms, ROC).

``analysis`` computes what is shown in the metric's own pass (``reid.evaluation``);
``ranklist`` draws rank lists with Pillow; ``figures`` plots with matplotlib (imported only
there); ``report`` writes a test set's files and ``index.html`` and holds TEST.VISUALIZE.
"""

from .analysis import (
    ORDERS,
    DistanceHistogram,
    RankingAnalysis,
    RankListCollector,
    RankLists,
    analyze_ranking,
    first_kept,
    roc_curve_fprs,
)
from .ranklist import RankListItem, RankListLayout, draw_rank_list
from .report import (
    VISUALIZE_CONFIG,
    SetReport,
    VisualizeOptions,
    VisualizingEvaluator,
    visualize_test_sets,
    write_index,
)

__all__ = [
    "ORDERS",
    "VISUALIZE_CONFIG",
    "DistanceHistogram",
    "RankListCollector",
    "RankListItem",
    "RankListLayout",
    "RankLists",
    "RankingAnalysis",
    "SetReport",
    "VisualizeOptions",
    "VisualizingEvaluator",
    "analyze_ranking",
    "draw_rank_list",
    "first_kept",
    "roc_curve_fprs",
    "visualize_test_sets",
    "write_index",
]
