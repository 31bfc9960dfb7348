"""The loss family: plain functions (tensors in, 0-dim tensor out) and the registered modules built
from MODEL.LOSSES. ``build`` (the registry and the loss set) is imported first, then the modules
that register themselves."""

from reid.utils.registry import import_submodules

from .build import LOSS_REGISTRY, LossSet, build_losses
from .center import CenterLoss, center_loss
from .circle import CircleLoss, pairwise_circle_loss
from .contrastive import ContrastiveLoss, contrastive_loss
from .cross_entropy import CrossEntropyLoss, cross_entropy_loss, ohem
from .focal import FocalLoss, focal_loss
from .margin_logits import (
    arcface_logits,
    arcface_margin,
    circle_logits,
    circle_margin,
    cosface_logits,
    cosface_margin,
    cosine_logits,
    normalized_softmax_logits,
)
from .meta_ntuplet import MetaNTupletLoss, meta_ntuplet_loss
from .mpn_tuplet import MPNTupletLoss, build_phi, mpn_tuplet_loss
from .ntuplet import NTupletLoss, count_triplets, ntuplet_loss, sample_tuplets
from .p2s_triplet import P2STripletLoss, p2s_triplet_loss
from .pairwise_cosface import PairwiseCosFaceLoss, pairwise_cosface_loss
from .pn_tuplet import PNTupletLoss, pn_tuplet_loss, prototype_tuplet_loss
from .proxy_nca import ProxyNCALoss, proxy_nca_loss
from .ratio import RatioLoss, ratio_loss
from .sparse_pairwise import SparsePairwiseLoss, sparse_pairwise_loss
from .triplet import TripletLoss, triplet_loss

import_submodules(__name__, __path__)  # every component file registers itself

__all__ = [
    "LOSS_REGISTRY",
    "LossSet",
    "build_losses",
    "CenterLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "MetaNTupletLoss",
    "MPNTupletLoss",
    "NTupletLoss",
    "P2STripletLoss",
    "PNTupletLoss",
    "PairwiseCosFaceLoss",
    "ProxyNCALoss",
    "RatioLoss",
    "SparsePairwiseLoss",
    "TripletLoss",
    "arcface_logits",
    "arcface_margin",
    "build_phi",
    "center_loss",
    "circle_logits",
    "circle_margin",
    "contrastive_loss",
    "cosface_logits",
    "cosface_margin",
    "cosine_logits",
    "count_triplets",
    "cross_entropy_loss",
    "focal_loss",
    "meta_ntuplet_loss",
    "mpn_tuplet_loss",
    "normalized_softmax_logits",
    "ntuplet_loss",
    "ohem",
    "p2s_triplet_loss",
    "pairwise_circle_loss",
    "pairwise_cosface_loss",
    "pn_tuplet_loss",
    "prototype_tuplet_loss",
    "proxy_nca_loss",
    "ratio_loss",
    "sample_tuplets",
    "sparse_pairwise_loss",
    "triplet_loss",
]
