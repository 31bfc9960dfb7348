"""Every loss on the edge batches: never NaN, zero with a graph where nothing is valid, and
invariant to the batch order."""

from collections.abc import Callable

import pytest
import torch

from reid.modeling.losses import (
    build_phi,
    center_loss,
    contrastive_loss,
    meta_ntuplet_loss,
    mpn_tuplet_loss,
    ntuplet_loss,
    p2s_triplet_loss,
    pairwise_circle_loss,
    pairwise_cosface_loss,
    pn_tuplet_loss,
    proxy_nca_loss,
    ratio_loss,
    sparse_pairwise_loss,
    triplet_loss,
)

MakeBatch = Callable[..., tuple[torch.Tensor, torch.Tensor]]

EDGE_SIZES = {
    "pk": [3, 3, 3, 3],
    "unequal": [4, 1, 2, 3],
    "singletons_and_pairs": [1, 2, 1, 2],
    "all_distinct": [1, 1, 1, 1, 1],
    "one_class": [5],
    "single_sample": [1],
}

_g = torch.Generator().manual_seed(123)
_ROWS = torch.randn(
    30, 6, generator=_g, dtype=torch.float64
)  # centers / proxies / classifier weights
_PHI = {torch.float64: build_phi(6, 2).double().eval()}
_PHI[torch.float32] = build_phi(6, 2).eval()
_PHI[torch.float32].load_state_dict(_PHI[torch.float64].state_dict())


def rows(f: torch.Tensor) -> torch.Tensor:
    return _ROWS.to(f.dtype)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "triplet_hard": lambda f, y: triplet_loss(f, y),
    "triplet_all_soft_cos": lambda f, y: triplet_loss(
        f, y, 0.1, "all", "cosine", soft_margin=True, scale=3.0
    ),
    "triplet_weighted": lambda f, y: triplet_loss(f, y, 0.3, "weighted", normalize=True),
    "contrastive": lambda f, y: contrastive_loss(f, y, 0.1, 5.0),
    "circle": lambda f, y: pairwise_circle_loss(f, y, 0.25, 128.0),
    "cosface": lambda f, y: pairwise_cosface_loss(f, y, 0.25, 128.0),
    # With the anchor among its positives every anchor with a negative has a term (soft margin:
    # never 0), singletons and all-distinct batches too.
    "triplet_hard_anchor": lambda f, y: triplet_loss(
        f, y, 0.0, soft_margin=True, anchor_positive=True
    ),
    "triplet_weighted_anchor": lambda f, y: triplet_loss(
        f, y, 0.0, "weighted", soft_margin=True, anchor_positive=True
    ),
    "ntuplet": lambda f, y: ntuplet_loss(f, y, 3, generator=torch.Generator().manual_seed(0)),
    "meta_ntuplet": lambda f, y: meta_ntuplet_loss(
        f, y, _PHI[f.dtype], 3, generator=torch.Generator().manual_seed(0)
    ),
    "p2s": lambda f, y: p2s_triplet_loss(f, y, "euclidean", 1.0),
    "p2s_exclude": lambda f, y: p2s_triplet_loss(f, y, "cosine", 4.0, exclude_anchor=True),
    "pn": lambda f, y: pn_tuplet_loss(f, y, None, 16.0),
    "pn_exclude": lambda f, y: pn_tuplet_loss(f, y, None, 16.0, exclude_anchor=True),
    "mpn": lambda f, y: mpn_tuplet_loss(f, y, _PHI[f.dtype], None, 16.0),
    "sp_h": lambda f, y: sparse_pairwise_loss(f, y, 0.04, "sp-h"),
    "sp_lh": lambda f, y: sparse_pairwise_loss(f, y, 0.04, "sp-lh"),
    "adasp": lambda f, y: sparse_pairwise_loss(f, y, 0.04, "adasp"),
    "center": lambda f, y: center_loss(f, y, rows(f)),
    "proxy_nca": lambda f, y: proxy_nca_loss(f, y, rows(f), 2.0),
    "proxy_nca_exclude": lambda f, y: proxy_nca_loss(f, y, rows(f), 2.0, exclude_positive=True),
    "ratio": lambda f, y: ratio_loss(f, y, rows(f)),
}
RANDOM = {"ntuplet", "meta_ntuplet"}  # samples tuplets, so the batch order changes the draw

NO_POSITIVE = {
    "triplet_hard",
    "triplet_all_soft_cos",
    "triplet_weighted",
    "circle",
    "cosface",
    "ntuplet",
    "meta_ntuplet",
    "p2s_exclude",
    "pn_exclude",
}
NO_NEGATIVE = {
    "triplet_hard",
    "triplet_all_soft_cos",
    "triplet_weighted",
    "triplet_hard_anchor",
    "triplet_weighted_anchor",
    "circle",
    "cosface",
    "ntuplet",
    "meta_ntuplet",
    "p2s",
    "p2s_exclude",
    "pn",
    "pn_exclude",
    "mpn",
    "sp_h",
    "sp_lh",
    "adasp",
}
# Batches in which a loss has no valid term at all.
ZERO = {
    "all_distinct": NO_POSITIVE,
    "one_class": NO_NEGATIVE,
    "single_sample": NO_POSITIVE | NO_NEGATIVE | {"contrastive"},  # the anchor: no negative
}


@pytest.mark.parametrize("batch", list(EDGE_SIZES))
@pytest.mark.parametrize("name", list(LOSSES))
def test_edge_batches_never_nan_and_zero_with_graph_when_nothing_is_valid(
    make_batch: MakeBatch, name: str, batch: str
) -> None:
    f, y = make_batch(EDGE_SIZES[batch], dim=6)
    f.requires_grad_(True)
    value = LOSSES[name](f, y)
    assert value.dim() == 0 and torch.isfinite(value)
    assert value.requires_grad
    value.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()
    if name in ZERO.get(batch, set()):
        assert value.item() == 0.0
        assert torch.count_nonzero(f.grad) == 0
    else:
        assert value.item() != 0.0


@pytest.mark.parametrize("name", sorted(set(LOSSES) - RANDOM))
def test_invariant_to_batch_order(make_batch: MakeBatch, name: str) -> None:
    f, y = make_batch(EDGE_SIZES["unequal"], dim=6, seed=5)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    assert LOSSES[name](f[perm], y[perm]).item() == pytest.approx(
        LOSSES[name](f, y).item(), rel=1e-12, abs=1e-14
    )


@pytest.mark.parametrize("name", list(LOSSES))
def test_float32_large_scales_stay_finite(make_batch: MakeBatch, name: str) -> None:
    f, y = make_batch(EDGE_SIZES["pk"], dim=6)
    f = (f * 50).float().requires_grad_(True)
    value = LOSSES[name](f, y)
    value.backward()
    assert f.grad is not None and torch.isfinite(value) and torch.isfinite(f.grad).all()
