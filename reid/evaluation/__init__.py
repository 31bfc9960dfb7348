"""Ranking metrics, re-ranking, query expansion, ROC, search and the ReID evaluator."""

from .distance import DISTANCE_REGISTRY, build_distance, compute_distmat
from .evaluator import (
    EvalSettings,
    ReidEvaluator,
    format_results_table,
    inference_on_dataset,
    score_features,
)
from .gallery import GalleryIndex
from .query_expansion import alpha_query_expansion
from .rank import RankAccumulator, evaluate_rank, score_chunks
from .rank_cuhk03 import SingleGalleryShotCMC
from .rerank import FeatureDistances, MatrixDistances, re_ranking, rerank_chunks
from .roc import RocAccumulator
from .search import SEARCH_REGISTRY, build_searcher, search_topk

__all__ = [
    "DISTANCE_REGISTRY",
    "SEARCH_REGISTRY",
    "EvalSettings",
    "FeatureDistances",
    "GalleryIndex",
    "MatrixDistances",
    "RankAccumulator",
    "ReidEvaluator",
    "RocAccumulator",
    "SingleGalleryShotCMC",
    "alpha_query_expansion",
    "build_distance",
    "build_searcher",
    "compute_distmat",
    "evaluate_rank",
    "format_results_table",
    "inference_on_dataset",
    "re_ranking",
    "rerank_chunks",
    "score_chunks",
    "score_features",
    "search_topk",
]
