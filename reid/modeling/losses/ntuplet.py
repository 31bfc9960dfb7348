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

import torch
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key

from .base import FeatureLoss
from .build import LOSS_REGISTRY
from .utils import (
    LogScale,
    ScaleLike,
    check_features_labels,
    class_index,
    cosine_matrix,
    resolve_scale,
    zero_loss,
)

NTUPLET_CONFIG = ConfigBlock(
    "MODEL.LOSSES.NTUPLET",
    (
        "NTupletLoss: -log softmax of the positive among N scaled cosine similarities"
        " (anchor vs one positive and N - 1 negatives of distinct classes), over "
        "tuplets drawn uniformly per batch."
    ),
    {
        "CLASSES_PER_TUPLET": Key(
            16,
            (
                "N (capped at the number of classes in the batch); 2 = soft-margin triplet on"
                " cosine distance."
            ),
        ),
        "NUM_TUPLETS": Key(
            0,
            ("Tuplets per batch; 0 = the batch's number of triplets (11,520 for P = 16, K = 4)."),
        ),
        "SIM_SCALE": Key(
            16.0,
            "Multiplier s of the similarities (temperature 1 / s).",
        ),
        "LEARN_SCALE": Key(
            True,
            "Learn s as a parameter log s, initialised from SIM_SCALE.",
        ),
        "FEAT_KEY": Key(
            "features",
            ("Key of the model's outputs dict that the loss reads its B x D features from."),
        ),
        "SCALE": Key(
            1.0,
            "Weight of this loss in the total loss.",
        ),
    },
)


def count_triplets(y: torch.Tensor) -> int:
    """Number of (anchor, positive, negative) triplets of the batch: ``sum_i |P(i)| |N(i)|``
    (11,520 for P = 16 identities x K = 4 images)."""
    _, inverse, counts = class_index(y)
    sizes = counts[inverse]
    return int(((sizes - 1) * (y.shape[0] - sizes)).sum())


def _log_esp_suffix(log_w: torch.Tensor, k: int) -> torch.Tensor:
    """``E[a, j, r] = log e_r(w_a[j:])``: log elementary symmetric polynomials of the weights
    ``w_a = exp(log_w[a])`` over the suffix starting at class j, for r = 0..k. Shape (A, P + 1, k + 1)."""
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
    """``src[index]`` for a 1-D ``src`` (index_select is much faster than advanced indexing on CPU)."""
    return src.index_select(0, index.reshape(-1)).view(index.shape)


def sample_tuplets(
    y: torch.Tensor,
    n_classes: int,
    num_tuplets: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_tuplets`` tuplets drawn i.i.d. uniformly from all tuplets of the batch.

    Returns a (T, n + 1) int64 tensor of batch indices: anchor, positive, then n - 1 negatives of
    distinct classes, where n = min(n_classes, number of classes in the batch). T = 0 when the
    batch has no valid tuplet (no class with two samples, or a single class). Random numbers come
    from ``generator`` if given (it must live on ``y``'s device), else from torch's global RNG.

    The anchor is drawn with probability proportional to its number of tuplets, the negative
    classes are decided class by class with ``P(take c | r still needed) = w_c e_{r-1}(w_{c+1:}) /
    e_r(w_{c:})`` (w = class sizes, the anchor's own class weighted 0), which draws a k-subset with
    probability proportional to the product of its sizes (for equal sizes this is selection
    sampling, r / (classes left)); positive and negatives are then uniform within their classes.
    """
    if n_classes < 2:
        raise ValueError(
            f"n_classes must be >= 2 (anchor class + at least one negative class), got {n_classes}"
        )
    if num_tuplets < 0:
        raise ValueError(f"num_tuplets must be >= 0, got {num_tuplets}")
    device = y.device
    _, inverse, counts = class_index(y)
    num_p = counts.shape[0]
    n = min(n_classes, num_p)
    k = n - 1
    if k < 1 or num_tuplets == 0 or not bool((counts > 1).any()):
        return torch.zeros((0, n + 1), dtype=torch.int64, device=device)

    log_w = counts.to(torch.float64).log().unsqueeze(0).repeat(num_p, 1)
    log_w.fill_diagonal_(float("-inf"))
    table = _log_esp_suffix(log_w, k)  # (anchor class, position, r): log e_r of the suffix
    anchor_logw = (counts[inverse] - 1).to(torch.float64).log() + table[inverse, 0, k]
    anchor_p = torch.exp(anchor_logw - anchor_logw.max())
    anchors = torch.multinomial(anchor_p, num_tuplets, replacement=True, generator=generator)
    a_cls = _take(inverse, anchors)

    table_flat, log_w_flat = table.reshape(-1), log_w.reshape(-1)
    row = a_cls * ((num_p + 1) * (k + 1))
    draws = torch.rand(num_p, num_tuplets, generator=generator, device=device, dtype=torch.float64)
    remaining = torch.full((num_tuplets,), k, dtype=torch.int64, device=device)
    chosen = torch.zeros(num_tuplets, num_p, dtype=torch.bool, device=device)
    for c in range(num_p):
        current = _take(table_flat, row + (c * (k + 1)) + remaining)
        after = _take(table_flat, row + ((c + 1) * (k + 1) - 1) + remaining.clamp_min(1))
        log_p = _take(log_w_flat, a_cls * num_p + c) + after - current
        # Where every class left is needed the probability is 1; force it so rounding cannot drop one.
        eligible_left = (num_p - c) - (a_cls >= c).long()
        forced = (remaining >= eligible_left) & (a_cls != c)
        take = ((draws[c] < torch.exp(log_p)) | forced) & (remaining > 0)
        chosen[:, c] = take
        remaining = remaining - take.long()
    neg_classes = torch.nonzero(chosen)[:, 1].view(num_tuplets, k)

    # Members of each class, contiguous in ``order``; ``rank`` = a sample's position within its class.
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(y.shape[0], device=device) - starts[inverse[order]]

    uniform = torch.rand(num_tuplets, n, generator=generator, device=device, dtype=torch.float64)
    others = _take(counts, a_cls) - 1
    j = (uniform[:, 0] * others).long().clamp_max(others - 1)
    j = j + (j >= _take(rank, anchors)).long()
    positives = _take(order, _take(starts, a_cls) + j)
    sizes = _take(counts, neg_classes)
    within = (uniform[:, 1:] * sizes).long().clamp_max(sizes - 1)
    negatives = _take(order, _take(starts, neg_classes) + within)
    return torch.cat([anchors.unsqueeze(1), positives.unsqueeze(1), negatives], dim=1)


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

    ``tuplets`` (T x (n + 1) batch indices: anchor, positive, negatives) are used as given;
    otherwise ``num_tuplets`` (default: :func:`count_triplets` of the batch) are drawn with
    :func:`sample_tuplets`. With n = 2 this is the soft-margin triplet on cosine distance with
    scale s and margin 0, on the same tuplets.
    """
    check_features_labels(f, y, "ntuplet_loss")
    resolve_scale(scale)
    if tuplets is None:
        count = count_triplets(y) if num_tuplets is None else num_tuplets
        tuplets = sample_tuplets(y, n_classes, count, generator)
    elif tuplets.dim() != 2 or tuplets.shape[1] < 3:
        raise ValueError(
            f"tuplets must be T x (n + 1) with n >= 2, got shape {tuple(tuplets.shape)}"
        )
    if tuplets.shape[0] == 0:
        return zero_loss(f)
    b = f.shape[0]
    flat = (tuplets[:, :1] * b + tuplets[:, 1:]).reshape(-1)
    logits = scale * cosine_matrix(f, f).reshape(-1).index_select(0, flat).view(
        tuplets.shape[0], -1
    )
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


@LOSS_REGISTRY.register()
class NTupletLoss(FeatureLoss):
    """N-tuplet loss on ``outputs[NTUPLET.FEAT_KEY]``: CLASSES_PER_TUPLET (N), NUM_TUPLETS
    (0 = the batch's number of triplets), SIM_SCALE / LEARN_SCALE. Sampling uses torch's global RNG."""

    cfg_key = "NTUPLET"

    config_block = NTUPLET_CONFIG
    log_name = "loss_ntuplet"

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        block = self.block(cfg)
        self.n_classes = int(block.CLASSES_PER_TUPLET)
        self.num_tuplets = int(block.NUM_TUPLETS)
        if self.n_classes < 2:
            raise ValueError(f"{self.key('CLASSES_PER_TUPLET')} must be >= 2, got {self.n_classes}")
        if self.num_tuplets < 0:
            raise ValueError(
                f"{self.key('NUM_TUPLETS')} must be >= 0 (0 = number of triplets of the batch), got {self.num_tuplets}"
            )
        self.scale = LogScale(
            float(block.SIM_SCALE), bool(block.LEARN_SCALE), self.key("SIM_SCALE")
        )

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return ntuplet_loss(
            self.features(outputs),
            targets,
            n_classes=self.n_classes,
            num_tuplets=self.num_tuplets or None,
            scale=self.scale(),
        )

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, num_tuplets={self.num_tuplets or 'all triplets'}"
