"""The classifier keys (MODEL.HEADS.CLS_LAYER, SCALE, MARGIN) and NECK_FEAT mean what they mean in
fastreid: training logits and features of reid's EmbeddingHead equal fastreid 1.4.0's on the same
weights and inputs."""

import pytest
import torch

from reid.config import load_config
from reid.modeling.heads import build_heads
from reid.utils.fastreid_checkpoint import convert_fastreid_state

try:
    from fastreid.config import get_cfg as fastreid_cfg
    from fastreid.modeling.heads import build_heads as fastreid_build_heads
except ImportError as e:
    pytest.skip(
        f"fastreid 1.4.0 is not importable ({e}): pip install --no-deps fastreid==1.4.0 "
        f"(see INSTALL.md)",
        allow_module_level=True,
    )

CHANNELS, CLASSES = 32, 7


@pytest.mark.parametrize(
    "cls_layer,scale,margin",
    [("Linear", 1, 0.0), ("CosSoftmax", 30, 0.35), ("CircleSoftmax", 64, 0.35)],  # fastreid: int
)
@pytest.mark.parametrize("neck_feat,embedding_dim", [("before", 0), ("after", 16)])
def test_training_logits_and_features_equal_fastreids(
    cls_layer, scale, margin, neck_feat, embedding_dim
):
    opts = [
        "MODEL.BACKBONE.FEAT_DIM", str(CHANNELS), "MODEL.HEADS.NUM_CLASSES", str(CLASSES),
        "MODEL.HEADS.WITH_BNNECK", "True", "MODEL.HEADS.NECK_FEAT", neck_feat,
        "MODEL.HEADS.EMBEDDING_DIM", str(embedding_dim), "MODEL.HEADS.CLS_LAYER", cls_layer,
        "MODEL.HEADS.SCALE", str(scale), "MODEL.HEADS.MARGIN", str(margin),
        "MODEL.HEADS.POOL_LAYER", "GeneralizedMeanPoolingP",
    ]  # fmt: skip
    cfg = fastreid_cfg()
    cfg.merge_from_list(opts)
    torch.manual_seed(0)
    theirs = fastreid_build_heads(cfg).double().train()
    with torch.no_grad():
        theirs.weight.normal_()  # classifier rows of unit scale: cosines far from 0
    ours = build_heads(load_config(None, opts), CHANNELS).double().train()
    state = {f"heads.{k}": v for k, v in theirs.state_dict().items()}
    own = {f"heads.{k}": v.shape for k, v in ours.state_dict().items()}
    converted, _ = convert_fastreid_state(state, own)
    ours.load_state_dict({k[len("heads.") :]: v for k, v in converted.items()}, strict=True)

    g = torch.Generator().manual_seed(1)
    fmap = torch.rand(6, CHANNELS, 4, 2, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 4, 6])
    expected = theirs(fmap, targets)
    got = ours(fmap, targets)
    torch.testing.assert_close(got["logits"], expected["cls_outputs"])
    torch.testing.assert_close(got["features"], expected["features"])
