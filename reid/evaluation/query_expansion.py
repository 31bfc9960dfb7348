"""Alpha query expansion (alpha-QE, Radenovic et al.; fastreid's ``aqe``), memory-bounded.

Query and gallery features are pooled; each feature is replaced by the mean of its ``qe_k``
most cosine-similar features (itself included) weighted by similarity ** alpha. Repeated
``qe_times`` times, each round ranking by the normalised features of the previous round.
Similarities are computed for a chunk of rows at a time, never for all pairs at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reid.config.schema import ConfigBlock, InvalidArgument, Key, declare

from .rank import auto_chunk_size, iter_chunks

__all__ = ["AQE_CONFIG", "alpha_query_expansion", "check_expansion"]


AQE_CONFIG = declare(
    ConfigBlock(
        "TEST.AQE",
        "Alpha query expansion of the test features (fastreid's aqe).",
        {
            "ENABLED": Key(False, "Expand query and gallery features before the distances."),
            "QE_TIME": Key(1, "Rounds of expansion (>= 1)."),
            "QE_K": Key(5, "Neighbours averaged per feature, the feature itself included (>= 1)."),
            "ALPHA": Key(3.0, "A neighbour's weight is its cosine similarity ** ALPHA."),
        },
    )
)


def check_expansion(qe_times: int, qe_k: int, num_features: int | None = None) -> None:
    """The rules of :func:`alpha_query_expansion`'s settings.

    Args:
        qe_times: Rounds of expansion, >= 1.
        qe_k: Neighbours per feature, >= 1 and at most ``num_features`` when that is given.
        num_features: The number of query + gallery features, once known.
    """
    if qe_times < 1:
        raise InvalidArgument("qe_times", f"must be >= 1, got {qe_times}")
    if num_features is None and qe_k < 1:
        raise InvalidArgument("qe_k", f"must be >= 1, got {qe_k}")
    if num_features is not None and not 1 <= qe_k <= num_features:
        raise InvalidArgument(
            "qe_k",
            f"must lie in [1, {num_features}] (the number of query + gallery features), got {qe_k}",
        )


def alpha_query_expansion(
    query_feat: torch.Tensor,
    gallery_feat: torch.Tensor,
    qe_times: int = 1,
    qe_k: int = 5,
    alpha: float = 3.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expanded query and gallery features.

    Args:
        query_feat: Query features, one row each.
        gallery_feat: Gallery features, same width.
        qe_times: Rounds of expansion.
        qe_k: Neighbours averaged per feature (the feature itself included).
        alpha: Exponent of the similarity weights.
        chunk_size: Rows whose similarities are computed at once (default: from the budget of
            ``reid.evaluation.rank.CHUNK_ELEMENTS``).

    Returns:
        ``(query, gallery)`` expanded, float32, on the input's device.

    The query and its nearest gallery feature pull each other in:

    >>> q, g = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    >>> expanded_q, expanded_g = alpha_query_expansion(q, g, qe_k=2, alpha=1.0)
    >>> print(expanded_q)
    tensor([[0.8536, 0.3536]])
    """
    feats = torch.cat([query_feat, gallery_feat]).float()
    num, dim = feats.shape
    check_expansion(qe_times, qe_k, num)
    step = chunk_size or auto_chunk_size(num + qe_k * dim, feats.device)
    normed = F.normalize(feats, p=2, dim=1)
    for _ in range(qe_times):
        expanded = torch.empty_like(feats)
        for start, end in iter_chunks(num, step):
            sims = normed[start:end] @ normed.t()
            top_sims, top_idx = torch.topk(sims, qe_k, dim=1)
            weights = top_sims.pow(alpha)
            expanded[start:end] = (feats[top_idx] * weights[..., None]).mean(1)
        feats = expanded
        normed = F.normalize(feats, p=2, dim=1)
    num_query = query_feat.shape[0]
    return feats[:num_query], feats[num_query:]
