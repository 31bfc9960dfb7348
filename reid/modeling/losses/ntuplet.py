"""N-tuplet loss (multi-class subsampling classification) with uniform tuplet sampling.

A tuplet is (anchor, one positive, n - 1 negatives from n - 1 distinct other classes). Tuplets are
drawn i.i.d. and exactly uniformly from the set of all tuplets of the batch, also for unequal
class sizes: the anchor with probability proportional to the number of its tuplets, then the
positive uniformly, then the negative classes as a subset drawn with probability proportional to
the product of their sizes (sequentially, with elementary symmetric polynomials in log space),
then one sample of each chosen class uniformly. Everything is vectorised over tuplets; the only
Python loops run over the classes of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reid.config.schema import ConfigBlock, InvalidArgument, Key, configurable
from reid.structures import OutputKeys

from .base import FEAT_KEY, WEIGHT, FeatureLoss, sim_scale_keys
from .build import LOSS_REGISTRY
from .utils import (
    LogScale,
    ScaleLike,
    check_features_labels,
    check_scale,
    class_index,
    cosine_matrix,
    zero_loss,
)

NTUPLET_CONFIG = ConfigBlock(
    "MODEL.LOSSES.NTUPLET",
    "NTupletLoss: -log softmax of the positive among N scaled cosine similarities (anchor vs one "
    "positive and N - 1 negatives of distinct classes), over tuplets drawn uniformly per batch.",
    {
        "CLASSES_PER_TUPLET": Key(
            16,
            "N (capped at the number of classes in the batch); 2 = soft-margin triplet on cosine "
            "distance.",
        ),
        "NUM_TUPLETS": Key(
            0, "Tuplets per batch; 0 = the batch's number of triplets (11,520 for P = 16, K = 4)."
        ),
        **sim_scale_keys(16.0, learn_scale=True),
        "FEAT_KEY": FEAT_KEY,
        "SCALE": WEIGHT,
    },
)


def count_triplets(y: torch.Tensor) -> int:
    """Number of (anchor, positive, negative) triplets of the batch: ``sum_i |P(i)| |N(i)|``.

    >>> count_triplets(torch.arange(16).repeat_interleave(4))  # P = 16 identities x K = 4 images
    11520
    """
    _, inverse, counts = class_index(y)
    sizes = counts[inverse]
    return int(((sizes - 1) * (y.shape[0] - sizes)).sum())


def _log_esp_suffix(log_w: torch.Tensor, k: int) -> torch.Tensor:
    """``E[a, j, r] = log e_r(w_a[j:])``: log elementary symmetric polynomials of the weights
    ``w_a = exp(log_w[a])`` over the suffix starting at class j, for r = 0..k.

    Returns:
        An (A, P + 1, k + 1) tensor.
    """
    num_a, num_p = log_w.shape
    table = torch.full(
        (num_a, num_p + 1, k + 1), float("-inf"), dtype=log_w.dtype, device=log_w.device
    )
    table[:, :, 0] = 0.0
    for j in range(num_p - 1, -1, -1):
        take = log_w[:, j : j + 1] + table[:, j + 1, :-1]
        table[:, j, 1:] = torch.logaddexp(table[:, j + 1, 1:], take)
    return table


def _take(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``src[index]`` for a 1-D ``src`` (index_select: far faster than advanced indexing on CPU)."""
    return src.index_select(0, index.reshape(-1)).view(index.shape)


def sample_tuplets(
    y: torch.Tensor,
    n_classes: int,
    num_tuplets: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_tuplets`` tuplets drawn i.i.d. uniformly from all tuplets of the batch.

    The anchor is drawn with probability proportional to its number of tuplets, the negative
    classes are decided class by class with ``P(take c | r still needed) = w_c e_{r-1}(w_{c+1:}) /
    e_r(w_{c:})`` (w = class sizes, the anchor's own class weighted 0), which draws a k-subset with
    probability proportional to the product of its sizes (for equal sizes this is selection
    sampling, r / (classes left)); positive and negatives are then uniform within their classes.

    Args:
        y: B labels.
        n_classes: n, the classes of a tuplet (>= 2), capped at the number of classes in the batch.
        num_tuplets: T (>= 0).
        generator: The RNG (it must live on ``y``'s device); default torch's global RNG.

    Returns:
        A T x (n + 1) int64 tensor of batch indices: anchor, positive, then n - 1 negatives of
        distinct classes. T = 0 when the batch has no valid tuplet (no class with two samples,
        or a single class).

    >>> sample_tuplets(torch.tensor([0, 0, 1, 1, 2]), 3, 2, torch.Generator().manual_seed(0))
    tensor([[3, 2, 0, 4],
            [2, 3, 0, 4]])
    """
    if n_classes < 2:
        raise ValueError(
            f"n_classes must be >= 2 (anchor class + at least one negative class), got {n_classes}"
        )
    if num_tuplets < 0:
        raise ValueError(f"num_tuplets must be >= 0, got {num_tuplets}")
    _, inverse, counts = class_index(y)
    n = min(n_classes, counts.shape[0])
    if n < 2 or num_tuplets == 0 or not bool((counts > 1).any()):
        return torch.zeros((0, n + 1), dtype=torch.int64, device=y.device)
    # The random draws happen in this order: anchors, negative classes, members.
    log_w = _negative_class_log_weights(counts)
    table = _log_esp_suffix(log_w, n - 1)
    anchors = _draw_anchors(inverse, counts, table, num_tuplets, generator)
    anchor_classes = _take(inverse, anchors)
    neg_classes = _draw_negative_classes(anchor_classes, log_w, table, generator)
    positives, negatives = _draw_members(
        inverse, counts, anchors, anchor_classes, neg_classes, generator
    )
    return torch.cat([anchors.unsqueeze(1), positives.unsqueeze(1), negatives], dim=1)


def _negative_class_log_weights(counts: torch.Tensor) -> torch.Tensor:
    """P x P: ``log |c|`` at [a, c], the weight of class c as a negative class of anchor class a;
    ``-inf`` on the diagonal (an anchor's own class is never a negative class)."""
    num_p = counts.shape[0]
    log_w = counts.to(torch.float64).log().unsqueeze(0).repeat(num_p, 1)
    return log_w.fill_diagonal_(float("-inf"))


def _draw_anchors(
    inverse: torch.Tensor,
    counts: torch.Tensor,
    table: torch.Tensor,
    num_tuplets: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """T anchors, each sample drawn with probability proportional to its number of tuplets:
    (its class size - 1) positives times ``e_k`` of the other classes' sizes."""
    k = table.shape[2] - 1
    anchor_logw = (counts[inverse] - 1).to(torch.float64).log() + table[inverse, 0, k]
    anchor_p = torch.exp(anchor_logw - anchor_logw.max())
    return torch.multinomial(anchor_p, num_tuplets, replacement=True, generator=generator)


def _draw_negative_classes(
    anchor_classes: torch.Tensor,
    log_w: torch.Tensor,
    table: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """T x k negative classes per tuplet (in increasing order), a k-subset of the classes other
    than the anchor's drawn with probability proportional to the product of their sizes."""
    num_tuplets = anchor_classes.shape[0]
    num_p, k = log_w.shape[0], table.shape[2] - 1
    device = anchor_classes.device
    table_flat, log_w_flat = table.reshape(-1), log_w.reshape(-1)
    row = anchor_classes * ((num_p + 1) * (k + 1))
    draws = torch.rand(num_p, num_tuplets, generator=generator, device=device, dtype=torch.float64)
    remaining = torch.full((num_tuplets,), k, dtype=torch.int64, device=device)
    chosen = torch.zeros(num_tuplets, num_p, dtype=torch.bool, device=device)
    for c in range(num_p):
        current = _take(table_flat, row + (c * (k + 1)) + remaining)
        after = _take(table_flat, row + ((c + 1) * (k + 1) - 1) + remaining.clamp_min(1))
        log_p = _take(log_w_flat, anchor_classes * num_p + c) + after - current
        # Where every class left is needed, the probability is 1: force it, so that rounding
        # cannot drop one.
        eligible_left = (num_p - c) - (anchor_classes >= c).long()
        forced = (remaining >= eligible_left) & (anchor_classes != c)
        take = ((draws[c] < torch.exp(log_p)) | forced) & (remaining > 0)
        chosen[:, c] = take
        remaining = remaining - take.long()
    return torch.nonzero(chosen)[:, 1].view(num_tuplets, k)


def _draw_members(
    inverse: torch.Tensor,
    counts: torch.Tensor,
    anchors: torch.Tensor,
    anchor_classes: torch.Tensor,
    neg_classes: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T positives, T x k negatives): a uniform other member of each anchor's class and a
    uniform member of each negative class."""
    # Members of each class, contiguous in ``order``; ``rank`` = a sample's position in its class.
    device = inverse.device
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(inverse.shape[0], device=device) - starts[inverse[order]]

    num_tuplets, k = neg_classes.shape
    uniform = torch.rand(
        num_tuplets, k + 1, generator=generator, device=device, dtype=torch.float64
    )
    others = _take(counts, anchor_classes) - 1
    j = (uniform[:, 0] * others).long().clamp_max(others - 1)
    j = j + (j >= _take(rank, anchors)).long()  # skip the anchor itself
    positives = _take(order, _take(starts, anchor_classes) + j)
    sizes = _take(counts, neg_classes)
    within = (uniform[:, 1:] * sizes).long().clamp_max(sizes - 1)
    negatives = _take(order, _take(starts, neg_classes) + within)
    return positives, negatives


def ntuplet_loss(
    f: torch.Tensor,
    y: torch.Tensor,
    n_classes: int = 16,
    num_tuplets: int | None = None,
    scale: ScaleLike = 16.0,
    tuplets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean over tuplets of ``-log softmax`` of the positive among the n scaled cosine similarities
    ``s cos(f_a, f_p), s cos(f_a, f_n1), ...``.

    With n = 2 this is the soft-margin triplet on cosine distance with scale s and margin 0, on
    the same tuplets.

    Args:
        f: B x D features.
        y: B labels.
        n_classes: n, when the tuplets are drawn.
        num_tuplets: The tuplets drawn (default: :func:`count_triplets` of the batch).
        scale: ``s``, a number or a learnable tensor.
        tuplets: T x (n + 1) batch indices (anchor, positive, negatives) used as given instead of
            drawing them with :func:`sample_tuplets`.
        generator: The RNG of the draw (default: torch's global RNG).

    Returns:
        The 0-dim loss (zero, with a graph, when the batch has no tuplet).

    >>> f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = torch.tensor([0, 0, 1, 1])
    >>> g = torch.Generator().manual_seed(0)
    >>> round(float(ntuplet_loss(f, y, n_classes=2, scale=4.0, generator=g)), 4)
    0.1641
    >>> tuplets = torch.tensor([[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, 1]])
    >>> round(float(ntuplet_loss(f, y, scale=4.0, tuplets=tuplets)), 4)
    0.04
    """
    check_features_labels(f, y, "ntuplet_loss")
    check_scale(scale)
    tuplets = resolve_tuplets(y, n_classes, num_tuplets, tuplets, generator)
    if tuplets.shape[0] == 0:
        return zero_loss(f)
    return tuplet_softmax_loss(f, f, tuplets, scale)


def resolve_tuplets(
    y: torch.Tensor,
    n_classes: int,
    num_tuplets: int | None,
    tuplets: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``tuplets`` checked, or ``num_tuplets`` (default: :func:`count_triplets`) tuplets drawn
    with :func:`sample_tuplets` when it is None."""
    if tuplets is None:
        count = count_triplets(y) if num_tuplets is None else num_tuplets
        return sample_tuplets(y, n_classes, count, generator)
    if tuplets.dim() != 2 or tuplets.shape[1] < 3:
        raise ValueError(
            f"tuplets must be T x (n + 1) with n >= 2, got shape {tuple(tuplets.shape)}"
        )
    return tuplets


def tuplet_softmax_loss(
    f: torch.Tensor, refs: torch.Tensor, tuplets: torch.Tensor, scale: ScaleLike
) -> torch.Tensor:
    """Mean over the T tuplets of ``-log softmax`` of the positive among the logits
    ``s cos(f_a, refs_j)``, j = the positive then the negatives of the tuplet.

    Args:
        f: B x D anchor features.
        refs: B x D reference nodes of the same samples (``f`` for the N-tuplet loss,
            ``phi(f)`` for the meta N-tuplet loss).
        tuplets: T x (n + 1) batch indices (anchor, positive, negatives), T >= 1.
        scale: ``s``, a number or a learnable tensor.
    """
    b = f.shape[0]
    flat = (tuplets[:, :1] * b + tuplets[:, 1:]).reshape(-1)
    logits = scale * cosine_matrix(f, refs).reshape(-1).index_select(0, flat).view(
        tuplets.shape[0], -1
    )
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


@LOSS_REGISTRY.register()
class NTupletLoss(FeatureLoss):
    """N-tuplet loss on ``outputs[feat_key]`` (see :func:`ntuplet_loss`); the tuplets are drawn
    with torch's global RNG.

    Args:
        classes_per_tuplet: N (>= 2), capped at the number of classes in the batch.
        num_tuplets: Tuplets per batch; 0 = the batch's number of triplets.
        sim_scale: The multiplier ``s``.
        learn_scale: Learn ``s`` as a parameter ``log s``.
        feat_key: The outputs key of the features.
    """

    config_block = NTUPLET_CONFIG
    log_name = "loss_ntuplet"
    needs_positives = True

    @configurable
    def __init__(
        self,
        classes_per_tuplet: int = 16,
        num_tuplets: int = 0,
        sim_scale: float = 16.0,
        learn_scale: bool = True,
        feat_key: str = OutputKeys.FEATURES,
    ) -> None:
        super().__init__(feat_key)
        self.n_classes = int(classes_per_tuplet)
        self.num_tuplets = int(num_tuplets)
        if self.n_classes < 2:
            raise InvalidArgument("classes_per_tuplet", f"must be >= 2, got {self.n_classes}")
        if self.num_tuplets < 0:
            raise InvalidArgument(
                "num_tuplets",
                f"must be >= 0 (0 = number of triplets of the batch), got {self.num_tuplets}",
            )
        self.scale = LogScale(float(sim_scale), bool(learn_scale), "sim_scale")

    def forward(self, outputs: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        return ntuplet_loss(
            self.features(outputs),
            targets,
            n_classes=self.n_classes,
            num_tuplets=self.num_tuplets or None,
            scale=self.scale(),
        )

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, num_tuplets={self.num_tuplets or 'all triplets'}"
