"""The loss set, and the config path of every registered loss: names, blocks, keys, errors."""

import re
from functools import reduce
from typing import Any

import pytest
import torch

from reid.config import ConfigError, get_cfg, load_config, merge_from_list
from reid.modeling.losses import (
    LOSS_REGISTRY,
    CrossEntropyLoss,
    LossSet,
    MPNTupletLoss,
    TripletLoss,
    build_losses,
    triplet_loss,
)
from reid.modeling.losses.base import ReidLoss

# Registered name -> (its block under MODEL.LOSSES, its log name).
EXPECTED_NAMES = {
    "CrossEntropyLoss": ("CE", "loss_cls"),
    "TripletLoss": ("TRI", "loss_triplet"),
    "ContrastiveLoss": ("CONTRASTIVE", "loss_contrastive"),
    "CenterLoss": ("CENTER", "loss_center"),
    "CircleLoss": ("CIRCLE", "loss_circle"),
    "ProxyNCALoss": ("PROXY_NCA", "loss_proxy_nca"),
    "RatioLoss": ("RATIO", "loss_ratio"),
    "NTupletLoss": ("NTUPLET", "loss_ntuplet"),
    "P2STripletLoss": ("P2S", "loss_p2s"),
    "PNTupletLoss": ("PN", "loss_pn_tuplet"),
    "MPNTupletLoss": ("MPN", "loss_mpn_tuplet"),
    "MetaNTupletLoss": ("META_NTUPLET", "loss_meta_ntuplet"),
    "SparsePairwiseLoss": ("SP", "loss_sp"),
    "AdaSPLoss": ("SP", "loss_sp"),
    "FocalLoss": ("FL", "loss_focal"),
    "Cosface": ("COSFACE", "loss_cosface"),
}

# Registered name -> (a key of its block, a value the loss rejects, the problem it reports).
BAD_VALUES = {
    "CrossEntropyLoss": ("OHEM_RATIO", 1.0, r"must be in \[0, 1\) \(0 = off\), got 1.0"),
    "TripletLoss": ("MINING", "hard", r"must be one of \['batch_hard', 'all', 'weighted'\]"),
    "ContrastiveLoss": ("NEG_MARGIN", -1.0, "must be >= 0, got -1.0"),
    "CenterLoss": ("LR", 0.0, "must be positive, got 0.0"),
    "CircleLoss": ("GAMMA", 0.0, "must be positive, got 0.0"),
    "ProxyNCALoss": ("SIM_SCALE", -1.0, "must be positive, got -1.0"),
    "RatioLoss": ("DISTANCE", "euclidean", "must be one of"),
    "NTupletLoss": ("NUM_TUPLETS", -1, "must be >= 0"),
    "P2STripletLoss": ("NEGATIVE", "semi", "must be one of"),
    "PNTupletLoss": ("CLASSES_PER_TUPLET", 1, r"must be 0 \(all classes of the batch\) or >= 2"),
    "MPNTupletLoss": ("REDUCTION", 5, r"\(5\) must be a positive divisor of the feature dim 16"),
    "MetaNTupletLoss": ("REDUCTION", 3, r"\(3\) must be a positive divisor of the feature dim 16"),
    "SparsePairwiseLoss": ("TEMP", 0.0, "must be positive, got 0.0"),
    "AdaSPLoss": ("TYPE", "sp", r"must be one of \['sp-h', 'sp-lh', 'adasp'\], got 'sp'"),
    "FocalLoss": ("ALPHA", 1.5, r"must be in \[0, 1\], got 1.5"),
    "Cosface": ("GAMMA", 0.0, "must be positive, got 0.0"),
}

# Registered name -> (non-default values of every key of its block but SCALE, the attributes of
# the module built from them). TRI's fastreid keys are tested in test_triplet.py.
ARGUMENTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "CrossEntropyLoss": (
        {
            "EPSILON": 0.1,
            "ALPHA": 0.3,
            "OHEM_RATIO": 0.2,
            "SMOOTH_OVER": "all",
            "OHEM_ROUNDING": "round",
        },
        {
            "epsilon": 0.1,
            "alpha": 0.3,
            "ohem_ratio": 0.2,
            "smooth_over": "all",
            "ohem_rounding": "round",
        },
    ),
    "TripletLoss": (
        {
            "MARGIN": 0.5,
            "MINING": "all",
            "DISTANCE": "sqeuclidean",
            "NORMALIZE": True,
            "SOFT_MARGIN": True,
            "SIM_SCALE": 2.0,
            "LEARN_SCALE": True,
            "ANCHOR_AS_POSITIVE": False,
            "FEAT_KEY": "neck_features",
        },
        {
            "anchor_as_positive": False,
            "margin": 0.5,
            "mining": "all",
            "distance": "sqeuclidean",
            "normalize": True,
            "soft_margin": True,
            "scale.fixed": 2.0,
            "scale.learnable": True,
            "feat_key": "neck_features",
        },
    ),
    "ContrastiveLoss": (
        {
            "POS_MARGIN": 0.2,
            "NEG_MARGIN": 1.5,
            "SQUARED": False,
            "NORMALIZE": True,
            "FEAT_KEY": "neck_features",
        },
        {
            "pos_margin": 0.2,
            "neg_margin": 1.5,
            "squared": False,
            "normalize": True,
            "feat_key": "neck_features",
        },
    ),
    "CenterLoss": (
        {"FEAT_DIM": 8, "LR": 0.25, "FEAT_KEY": "neck_features"},
        {"centers.shape": (7, 8), "feat_dim": 8, "lr": 0.25, "feat_key": "neck_features"},
    ),
    "CircleLoss": (
        {"MARGIN": 0.3, "GAMMA": 32.0, "FEAT_KEY": "neck_features"},
        {"margin": 0.3, "gamma": 32.0, "feat_key": "neck_features"},
    ),
    "Cosface": (
        {"MARGIN": 0.3, "GAMMA": 32.0, "FEAT_KEY": "neck_features"},
        {"margin": 0.3, "gamma": 32.0, "feat_key": "neck_features"},
    ),
    "FocalLoss": ({"ALPHA": 0.5, "GAMMA": 1.0}, {"alpha": 0.5, "gamma": 1.0}),
    "ProxyNCALoss": (
        {
            "EXCLUDE_POSITIVE": False,
            "SIM_SCALE": 4.0,
            "LEARN_SCALE": True,
            "FEAT_DIM": 5,
            "FEAT_KEY": "neck_features",
        },
        {
            "exclude_positive": False,
            "scale.fixed": 4.0,
            "scale.learnable": True,
            "proxies.shape": (7, 5),
            "feat_key": "neck_features",
        },
    ),
    "RatioLoss": (
        {"EPS": 0.2, "DISTANCE": "chord", "AVERAGE_OVER": "all_classes", "FEAT_KEY": "features"},
        {"eps": 0.2, "distance": "chord", "average_over": "all_classes", "feat_key": "features"},
    ),
    "NTupletLoss": (
        {
            "CLASSES_PER_TUPLET": 3,
            "NUM_TUPLETS": 40,
            "SIM_SCALE": 10.0,
            "LEARN_SCALE": False,
            "FEAT_KEY": "neck_features",
        },
        {
            "n_classes": 3,
            "num_tuplets": 40,
            "scale.fixed": 10.0,
            "scale.learnable": False,
            "feat_key": "neck_features",
        },
    ),
    "P2STripletLoss": (
        {
            "DISTANCE": "euclidean",
            "NEGATIVE": "random",
            "EXCLUDE_ANCHOR": True,
            "SIM_SCALE": 0.5,
            "LEARN_SCALE": False,
            "FEAT_KEY": "neck_features",
        },
        {
            "distance": "euclidean",
            "negative": "random",
            "exclude_anchor": True,
            "scale.fixed": 0.5,
            "scale.learnable": False,
            "feat_key": "neck_features",
        },
    ),
    "PNTupletLoss": (
        {
            "CLASSES_PER_TUPLET": 4,
            "EXCLUDE_ANCHOR": True,
            "SIM_SCALE": 9.0,
            "LEARN_SCALE": False,
            "FEAT_KEY": "neck_features",
        },
        {
            "n_classes": 4,
            "exclude_anchor": True,
            "scale.fixed": 9.0,
            "scale.learnable": False,
            "feat_key": "neck_features",
        },
    ),
    "MPNTupletLoss": (
        {
            "CLASSES_PER_TUPLET": 4,
            "EXCLUDE_ANCHOR": True,
            "REDUCTION": 4,
            "FEAT_DIM": 32,
            "SIM_SCALE": 8.0,
            "LEARN_SCALE": False,
            "FEAT_KEY": "neck_features",
        },
        {
            "n_classes": 4,
            "exclude_anchor": True,
            "phi.0.out_features": 8,
            "feat_dim": 32,
            "scale.fixed": 8.0,
            "scale.learnable": False,
            "feat_key": "neck_features",
        },
    ),
    "MetaNTupletLoss": (
        {
            "CLASSES_PER_TUPLET": 3,
            "NUM_TUPLETS": 40,
            "REDUCTION": 4,
            "FEAT_DIM": 32,
            "SIM_SCALE": 8.0,
            "LEARN_SCALE": False,
            "FEAT_KEY": "neck_features",
        },
        {
            "n_classes": 3,
            "num_tuplets": 40,
            "phi.0.out_features": 8,
            "feat_dim": 32,
            "scale.fixed": 8.0,
            "scale.learnable": False,
            "feat_key": "neck_features",
        },
    ),
    "SparsePairwiseLoss": (
        {"TEMP": 0.05, "TYPE": "SP_LH", "FEAT_KEY": "neck_features"},
        {"temperature": 0.05, "kind": "sp-lh", "feat_key": "neck_features"},
    ),
}
FASTREID_KEYS = {"TripletLoss": {"NORM_FEAT"}}


def _outputs(
    b: int = 12, d: int = 16, c: int = 10, seed: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, generator=g)
    return {
        "features": f,
        "neck_features": f * 2,
        "logits": torch.randn(b, c, generator=g),
        "cls_weight": torch.randn(c, d, generator=g),
    }, torch.arange(b) % 4


def test_registered_names_blocks_and_log_names() -> None:
    assert set(LOSS_REGISTRY.names()) == set(EXPECTED_NAMES)
    cfg = get_cfg()
    for name, (block, log_name) in EXPECTED_NAMES.items():
        cls = LOSS_REGISTRY.get(name)
        assert issubclass(cls, ReidLoss)
        assert (cls.config_block.path, cls.log_name) == (f"MODEL.LOSSES.{block}", log_name)
        assert "SCALE" in cfg.MODEL.LOSSES[block]


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_loss_builds_from_the_defaults_and_a_bad_value_names_its_key(name: str) -> None:
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.HEADS.NUM_CLASSES", "10"])
    cls = LOSS_REGISTRY.get(name)
    assert isinstance(cls(cfg, feat_dim=16), cls)
    key, value, problem = BAD_VALUES[name]
    full_key = f"{cls.config_block.path}.{key}"
    merge_from_list(cfg, [full_key, repr(value)])
    with pytest.raises(ConfigError, match=f"^{re.escape(full_key)} {problem}"):
        cls(cfg, feat_dim=16)


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
def test_every_key_of_a_loss_block_reaches_its_argument(name: str) -> None:
    cls = LOSS_REGISTRY.get(name)
    values, expected = ARGUMENTS[name]
    block = cls.config_block
    assert set(values) | FASTREID_KEYS.get(name, set()) == set(block.keys) - {"SCALE"}
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.HEADS.NUM_CLASSES", "7"])
    for key, value in values.items():
        merge_from_list(cfg, [block.full_key(key), repr(value)])
    module = cls(cfg, feat_dim=16)
    for path, value in expected.items():
        assert reduce(getattr, path.split("."), module) == value, path


def test_mpn_reads_its_own_block_not_pns() -> None:
    cfg = get_cfg()
    merge_from_list(
        cfg,
        [
            "MODEL.LOSSES.NAME",
            "['MPNTupletLoss']",
            "MODEL.LOSSES.MPN.CLASSES_PER_TUPLET",
            "4",
            "MODEL.LOSSES.MPN.EXCLUDE_ANCHOR",
            "True",
            "MODEL.LOSSES.MPN.SIM_SCALE",
            "8.0",
        ],
    )
    module = build_losses(cfg, feat_dim=16).losses["MPNTupletLoss"]
    assert isinstance(module, MPNTupletLoss)
    assert module.n_classes == 4 and module.exclude_anchor
    assert module.scale().item() == pytest.approx(8.0)


def test_every_loss_builds_and_runs_from_the_config() -> None:
    names = sorted(set(EXPECTED_NAMES) - {"AdaSPLoss"})
    cfg = get_cfg()
    merge_from_list(
        cfg,
        ["MODEL.HEADS.NUM_CLASSES", "10", "MODEL.BACKBONE.FEAT_DIM", "16"]
        + ["MODEL.LOSSES.NAME", repr(names)],
    )
    losses = build_losses(cfg)
    outputs, y = _outputs()
    values = losses(outputs, y)
    assert set(values) == {EXPECTED_NAMES[n][1] for n in names}
    total = sum(values.values())
    assert isinstance(total, torch.Tensor)
    total.backward()
    assert torch.isfinite(total)
    owned = {n for n, _ in losses.named_parameters()}
    assert {
        "losses.CenterLoss.centers",
        "losses.ProxyNCALoss.proxies",
        "losses.MPNTupletLoss.phi.0.weight",
        "losses.MetaNTupletLoss.phi.0.weight",
        "losses.NTupletLoss.scale.log_scale",
        "losses.PNTupletLoss.scale.log_scale",
    } <= owned
    assert losses.losses["CenterLoss"].centers.grad is not None


def test_loss_set_from_plain_modules_weights_each_loss_once() -> None:
    losses = LossSet({"CrossEntropyLoss": CrossEntropyLoss(), "TripletLoss": TripletLoss()})
    assert losses.weights == {"CrossEntropyLoss": 1.0, "TripletLoss": 1.0}
    outputs, y = _outputs()
    values = losses(outputs, y, weights={"TripletLoss": 0.5})
    tri = triplet_loss(outputs["features"], y, 0.3)
    assert set(values) == {"loss_triplet"}
    assert values["loss_triplet"].item() == pytest.approx(0.5 * tri.item(), rel=1e-6)
    with pytest.raises(ValueError, match="which are the same loss"):
        LossSet({"TripletLoss": TripletLoss(), "OtherTriplet": TripletLoss()})


def test_scale_weights_the_loss_and_stage_weights_replace_it() -> None:
    cfg = get_cfg()
    merge_from_list(
        cfg,
        [
            "MODEL.LOSSES.NAME",
            "['CrossEntropyLoss', 'TripletLoss']",
            "MODEL.LOSSES.CE.SCALE",
            "0.5",
            "MODEL.LOSSES.TRI.SCALE",
            "3.0",
        ],
    )
    losses = LossSet(cfg)
    outputs, y = _outputs()
    values = losses(outputs, y)
    ce = torch.nn.functional.cross_entropy(outputs["logits"], y)
    # fastreid's defaults: weighted mining, the anchor among its positives
    tri = triplet_loss(outputs["features"], y, 0.3, mining="weighted", anchor_positive=True)
    assert values["loss_cls"].item() == pytest.approx(0.5 * ce.item(), rel=1e-6)
    assert values["loss_triplet"].item() == pytest.approx(3.0 * tri.item(), rel=1e-6)
    staged = losses(outputs, y, weights={"TripletLoss": 2.0, "CrossEntropyLoss": 0})
    assert set(staged) == {"loss_triplet"}
    assert staged["loss_triplet"].item() == pytest.approx(2.0 * tri.item(), rel=1e-6)
    with pytest.raises(KeyError, match="not built: \\['CircleLoss'\\]"):
        losses(outputs, y, weights={"CircleLoss": 1.0})


@pytest.mark.parametrize(
    "names,message",
    [
        (
            ["TripletLos"],
            "MODEL.LOSSES.NAME: No object named 'TripletLos'.*registered names: .*TripletLoss",
        ),
        (["TripletLoss", "TripletLoss"], "lists 'TripletLoss' twice"),
        (
            ["SparsePairwiseLoss", "AdaSPLoss"],
            "'SparsePairwiseLoss' and 'AdaSPLoss', which are the same loss",
        ),
    ],
)
def test_unknown_and_duplicate_names_are_errors(names: list[str], message: str) -> None:
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.LOSSES.NAME", repr(names)])
    with pytest.raises(ValueError, match=message):
        LossSet(cfg)


def test_feat_dim_from_the_meta_architecture_sizes_the_parameters() -> None:
    cfg = get_cfg()
    merge_from_list(
        cfg,
        [
            "MODEL.HEADS.NUM_CLASSES",
            "5",
            "MODEL.LOSSES.NAME",
            "['CenterLoss', 'ProxyNCALoss', 'MPNTupletLoss', 'TripletLoss']",
        ],
    )
    losses = build_losses(cfg, feat_dim=24)
    assert losses.losses["CenterLoss"].centers.shape == (5, 24)
    assert losses.losses["ProxyNCALoss"].proxies.shape == (5, 24)
    mpn = losses.losses["MPNTupletLoss"]
    assert isinstance(mpn, MPNTupletLoss) and mpn.phi[0].in_features == 24
    # without the head's dim: MODEL.BACKBONE.FEAT_DIM (fastreid's 2048), and no guess when it is 0
    assert build_losses(cfg).losses["CenterLoss"].centers.shape == (5, 2048)
    merge_from_list(cfg, ["MODEL.BACKBONE.FEAT_DIM", "0"])
    with pytest.raises(ValueError, match="build_losses\\(cfg, feat_dim=<the head's output dim>\\)"):
        build_losses(cfg)


def test_fastreid_yaml_means_the_same(tmp_path: Any) -> None:
    yml = tmp_path / "bagtricks_R50.yml"
    yml.write_text(
        "MODEL:\n"
        "  LOSSES:\n"
        "    NAME: ('CrossEntropyLoss', 'TripletLoss')\n"
        "    CE:\n      EPSILON: 0.1\n      SCALE: 1.0\n"
        "    TRI:\n      MARGIN: 0.0\n      HARD_MINING: False\n      NORM_FEAT: True\n"
        "      SCALE: 1.0\n"
    )
    losses = build_losses(load_config(str(yml)))
    tri = losses.losses["TripletLoss"]
    assert (tri.mining, tri.soft_margin, tri.distance, tri.normalize, tri.margin) == (
        "weighted",
        True,
        "sqeuclidean",
        True,
        0.0,
    )
    assert losses.losses["CrossEntropyLoss"].epsilon == 0.1
