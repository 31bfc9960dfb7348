"""The loss set built from the config: registered names, weighting, stage weights, errors, parameters."""

import inspect
import sys

import pytest
import torch

from reid.config import get_cfg, load_config
from reid.config.config import merge_from_list
from reid.modeling.losses import LOSS_REGISTRY, LossSet, build_losses, triplet_loss
from reid.utils.registry import RegistryKeyError

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
    "SparsePairwiseLoss": ("SP", "loss_sp"),
    "AdaSPLoss": ("SP", "loss_sp"),
}


def _cfg(*opts):
    cfg = get_cfg()
    merge_from_list(cfg, ["MODEL.HEADS.NUM_CLASSES", 10, "MODEL.BACKBONE.FEAT_DIM", 16, *opts])
    return cfg


def _outputs(b=12, d=16, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, generator=g)
    return {
        "features": f,
        "neck_features": f * 2,
        "logits": torch.randn(b, c, generator=g),
        "cls_weight": torch.randn(c, d, generator=g),
    }, torch.arange(b) % 4


def test_registered_names_blocks_and_log_names():
    assert set(LOSS_REGISTRY.names()) == set(EXPECTED_NAMES)
    cfg = get_cfg()
    for name, (block, log_name) in EXPECTED_NAMES.items():
        cls = LOSS_REGISTRY.get(name)
        assert (cls.cfg_key, cls.log_name) == (block, log_name)
        assert "SCALE" in cfg.MODEL.LOSSES[block]


def test_every_key_of_every_loss_block_is_read_by_its_loss():
    cfg = get_cfg()
    for name, (block, _) in EXPECTED_NAMES.items():
        source = "".join(
            inspect.getsource(sys.modules[klass.__module__])
            for klass in LOSS_REGISTRY.get(name).__mro__
            if klass.__module__.startswith("reid.modeling.losses.")
        )
        base = inspect.getsource(sys.modules["reid.modeling.losses.base"]) + inspect.getsource(
            sys.modules["reid.modeling.losses.utils"]
        )
        for key in cfg.MODEL.LOSSES[block]:
            if key != "SCALE":  # read by LossSet
                assert f".{key}" in source or f".{key}" in base or f'"{key}"' in source, (
                    f"{block}.{key} is never read"
                )


def test_mpn_reads_its_own_block_not_pns():
    cfg = _cfg(
        "MODEL.LOSSES.NAME",
        ["MPNTupletLoss"],
        "MODEL.LOSSES.MPN.CLASSES_PER_TUPLET",
        4,
        "MODEL.LOSSES.MPN.EXCLUDE_ANCHOR",
        True,
        "MODEL.LOSSES.MPN.SIM_SCALE",
        8.0,
    )
    module = build_losses(cfg, feat_dim=16).losses["MPNTupletLoss"]
    assert module.n_classes == 4 and module.exclude_anchor
    assert module.scale().item() == pytest.approx(8.0)


def test_every_loss_builds_and_runs_from_the_config():
    names = sorted(set(EXPECTED_NAMES) - {"AdaSPLoss"})
    losses = build_losses(_cfg("MODEL.LOSSES.NAME", names))
    outputs, y = _outputs()
    values = losses(outputs, y)
    assert set(values) == {EXPECTED_NAMES[n][1] for n in names}
    total = sum(values.values())
    total.backward()
    assert torch.isfinite(total)
    owned = {n for n, _ in losses.named_parameters()}
    assert {
        "losses.CenterLoss.centers",
        "losses.ProxyNCALoss.proxies",
        "losses.MPNTupletLoss.phi.0.weight",
        "losses.NTupletLoss.scale.log_scale",
        "losses.PNTupletLoss.scale.log_scale",
    } <= owned
    assert losses.losses["CenterLoss"].centers.grad is not None


def test_scale_weights_the_loss_and_stage_weights_replace_it():
    cfg = _cfg(
        "MODEL.LOSSES.NAME",
        ["CrossEntropyLoss", "TripletLoss"],
        "MODEL.LOSSES.CE.SCALE",
        0.5,
        "MODEL.LOSSES.TRI.SCALE",
        3.0,
    )
    losses = LossSet(cfg)
    outputs, y = _outputs()
    values = losses(outputs, y)
    ce = torch.nn.functional.cross_entropy(outputs["logits"], y)
    tri = triplet_loss(outputs["features"], y, 0.3)
    assert values["loss_cls"].item() == pytest.approx(0.5 * ce.item(), rel=1e-6)
    assert values["loss_triplet"].item() == pytest.approx(3.0 * tri.item(), rel=1e-6)
    staged = losses(outputs, y, weights={"TripletLoss": 2.0, "CrossEntropyLoss": 0})
    assert set(staged) == {"loss_triplet"}
    assert staged["loss_triplet"].item() == pytest.approx(2.0 * tri.item(), rel=1e-6)
    with pytest.raises(KeyError, match="not built: \\['CircleLoss'\\]"):
        losses(outputs, y, weights={"CircleLoss": 1.0})


def test_unknown_and_duplicate_names_are_errors():
    with pytest.raises(
        RegistryKeyError,
        match="MODEL.LOSSES.NAME: No object named 'TripletLos'.*registered names: .*TripletLoss",
    ):
        LossSet(_cfg("MODEL.LOSSES.NAME", ["TripletLos"]))
    with pytest.raises(ValueError, match="lists 'TripletLoss' twice"):
        LossSet(_cfg("MODEL.LOSSES.NAME", ["TripletLoss", "TripletLoss"]))
    with pytest.raises(
        ValueError, match="'SparsePairwiseLoss' and 'AdaSPLoss', which are the same loss"
    ):
        LossSet(_cfg("MODEL.LOSSES.NAME", ["SparsePairwiseLoss", "AdaSPLoss"]))


def test_feat_dim_from_the_meta_architecture_sizes_the_parameters():
    cfg = get_cfg()
    merge_from_list(
        cfg,
        [
            "MODEL.HEADS.NUM_CLASSES",
            5,
            "MODEL.LOSSES.NAME",
            ["CenterLoss", "ProxyNCALoss", "MPNTupletLoss", "TripletLoss"],
        ],
    )
    losses = build_losses(cfg, feat_dim=24)
    assert losses.losses["CenterLoss"].centers.shape == (5, 24)
    assert losses.losses["ProxyNCALoss"].proxies.shape == (5, 24)
    assert losses.losses["MPNTupletLoss"].phi[0].in_features == 24
    with pytest.raises(ValueError, match="build_losses\\(cfg, feat_dim=<the head's output dim>\\)"):
        build_losses(cfg)


def test_fastreid_yaml_means_the_same(tmp_path):
    yml = tmp_path / "bagtricks_R50.yml"
    yml.write_text(
        "MODEL:\n"
        "  LOSSES:\n"
        "    NAME: ('CrossEntropyLoss', 'TripletLoss')\n"
        "    CE:\n      EPSILON: 0.1\n      SCALE: 1.0\n"
        "    TRI:\n      MARGIN: 0.0\n      HARD_MINING: False\n      NORM_FEAT: True\n      SCALE: 1.0\n"
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
