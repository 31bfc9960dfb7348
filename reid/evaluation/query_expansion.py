"""Alpha query expansion (alpha-QE, Radenovic et al.; fastreid's ``aqe``), memory-bounded.

Query and gallery features are pooled; each feature is replaced by the mean of its ``qe_k``
most cosine-similar features (itself included) weighted by similarity ** alpha. Repeated
``qe_times`` times, each round ranking by the normalised features of the previous round.
Similarities are computed for a chunk of rows at a time, never for all pairs at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reid.config.schema import ConfigBlock, Key, declare

from .rank import CHUNK_ELEMENTS, iter_chunks

__all__ = ["alpha_query_expansion"]


AQE_CONFIG = declare(
    ConfigBlock(
        "TEST.AQE",
        "Alpha query expansion (fastreid's aqe).",
        {
            "ENABLED": Key(
                False,
                "Alpha query expansion.",
            ),
            "QE_TIME": Key(
                1,
                "Rounds of expansion.",
            ),
            "QE_K": Key(
                5,
                "Neighbours averaged per feature (the feature itself included).",
            ),
            "ALPHA": Key(
                3.0,
                "Neighbour weight = cosine similarity ** ALPHA.",
            ),
        },
    )
)


def alpha_query_expansion(
    query_feat: torch.Tensor,
    gallery_feat: torch.Tensor,
    qe_times: int = 1,
    qe_k: int = 5,
    alpha: float = 3.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expanded (query, gallery) features, float32, on the input's device."""
    if qe_times < 1:
        raise ValueError(f"TEST.AQE.QE_TIME must be >= 1, got {qe_times}")
    feats = torch.cat([query_feat, gallery_feat]).float()
    num, dim = feats.shape
    if not 1 <= qe_k <= num:
        raise ValueError(
            f"TEST.AQE.QE_K must lie in [1, {num}] (the number of query + gallery features), got {qe_k}"
        )
    budget = CHUNK_ELEMENTS.get(feats.device.type, CHUNK_ELEMENTS["cpu"])
    step = chunk_size or max(1, budget // (num + qe_k * dim))
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
