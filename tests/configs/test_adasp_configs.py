"""The AdaSP configs follow the AdaSP repository (Astaxanthin/AdaSP, configs/): AutoAugment with
p = 0.1 wherever its Base-SBS.yml is inherited, and the training sampler each of its files names."""

import glob
import os

import pytest

from reid.config import load_config
from reid.data.transforms import AutoAugment, build_transforms
from reid.tables.record import default_papers_dir

PAPERS = default_papers_dir()
ROWS = sorted(
    p
    for p in glob.glob(os.path.join(PAPERS, "adasp", "*", "*.yml"))
    if not os.path.basename(p).startswith("Base-")
)

# What the repository's files say, per dataset folder: DATALOADER.SAMPLER_TRAIN (Market1501,
# DukeMTMC and VeRi files name BalancedIdentitySampler; the MSMT17 and VehicleID files inherit
# Base-bagtricks.yml's NaiveIdentitySampler) and whether Base-SBS.yml's INPUT.AUTOAUG (ENABLED,
# PROB 0.1) is inherited (Base-MGN.yml and the VeRi files build on Base-SBS.yml, the VehicleID
# files on Base-bagtricks.yml); the training set name.
REPOSITORY = {
    "Market1501": ("BalancedIdentitySampler", True, "Market1501"),
    "DukeMTMC": ("BalancedIdentitySampler", True, "DukeMTMC"),
    "MSMT17": ("NaiveIdentitySampler", True, "MSMT17"),
    "VeRi": ("BalancedIdentitySampler", True, "VeRi"),
    "VehicleID": ("NaiveIdentitySampler", False, "VehicleID"),
}


def test_thirty_rows_over_the_five_datasets():
    assert len(ROWS) == 30
    assert {os.path.basename(os.path.dirname(p)) for p in ROWS} == set(REPOSITORY)


@pytest.mark.parametrize("path", ROWS, ids=lambda p: os.path.relpath(p, PAPERS))
def test_sampler_autoaugment_and_training_set_as_the_repository(path):
    sampler, autoaug, train_set = REPOSITORY[os.path.basename(os.path.dirname(path))]
    cfg = load_config(path)
    assert cfg.DATALOADER.SAMPLER_TRAIN == sampler
    assert list(cfg.DATASETS.NAMES) == [train_set]
    assert (cfg.INPUT.AUTOAUG.ENABLED, cfg.INPUT.AUTOAUG.PROB) == (
        (True, 0.1) if autoaug else (False, 0.0)
    )
    steps = build_transforms(cfg, is_train=True).transforms
    assert (repr(steps[2]) == repr(AutoAugment(prob=0.1))) is autoaug


@pytest.mark.parametrize(
    "dataset,images,per_epoch,drops",
    [
        # 113,346 // 512 = 221 iterations; the 2,000-iteration warm-up ends in epoch 10 (0-based
        # 9), so STEPS [30, 40] drop the LR at epochs 39 and 49, as in the repository.
        ("VehicleID", 113346, 221, [39, 49]),
    ],
)
def test_vehicleid_schedule_is_the_repositorys(dataset, images, per_epoch, drops):
    from tests.solver.test_fastreid_schedule import reid_plan  # noqa: PLC0415

    path = os.path.join(PAPERS, "adasp", dataset, "norm_single_adasp.yml")
    cfg = load_config(path)
    assert (cfg.DATALOADER.EPOCH_LENGTH, cfg.SOLVER.SCHED_CLOCK) == ("images", "after_warmup")
    got_per_epoch, lrs = reid_plan(cfg)
    assert got_per_epoch == per_epoch == images // 512
    changes = [i for i in range(2001, len(lrs)) if lrs[i] != lrs[i - 1]]
    assert changes == [d * per_epoch for d in drops]


def test_person_configs_count_fastreids_epoch_and_start_the_cosine_after_the_warm_up():
    cfg = load_config(os.path.join(PAPERS, "adasp", "Market1501", "mgn_single_adasp.yml"))
    assert (cfg.DATALOADER.EPOCH_LENGTH, cfg.SOLVER.SCHED_CLOCK) == ("images", "after_warmup")


# fastreid's conventions, which the repository's networks and losses use (the schema defaults);
# reid's Base-bagtricks.yml states reid's own, so the AdaSP rows start from fastreid's file.
FASTREID_CONVENTIONS = {
    "MODEL.BACKBONE.STEM_POOL": "ceil",
    "MODEL.BACKBONE.NL_INTER_CHANNELS": 1,
    "MODEL.BACKBONE.NL_INIT": "pytorch",
    "MODEL.HEADS.LINEAR_INIT_STD": 0.01,
    "MODEL.LOSSES.CE.SMOOTH_OVER": "others",
    "MODEL.LOSSES.TRI.ANCHOR_AS_POSITIVE": True,
    "MODEL.MGN.STRIPES": "chunk",
    "DATALOADER.EPOCH_LENGTH": "images",
    "SOLVER.SCHED_CLOCK": "after_warmup",
}


@pytest.mark.parametrize("path", ROWS, ids=lambda p: os.path.relpath(p, PAPERS))
def test_rows_use_fastreids_conventions_as_the_repository(path):
    cfg = load_config(path)
    for key, value in FASTREID_CONVENTIONS.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, (key, node)


def test_the_rows_start_from_fastreids_bag_of_tricks_file():
    from reid.config.config import load_yaml_with_base  # noqa: PLC0415

    ours = load_yaml_with_base(os.path.join(PAPERS, "adasp", "Base-bagtricks.yml"))
    fastreid = os.path.join(os.path.dirname(__file__), "..", "data_fastreid", "configs")
    theirs = load_yaml_with_base(os.path.join(fastreid, "Base-bagtricks.yml"))
    assert ours.pop("MODEL")["DEVICE"] == "auto"
    theirs_model = theirs.pop("MODEL")
    assert ours == theirs
    assert load_yaml_with_base(os.path.join(PAPERS, "adasp", "Base-bagtricks.yml"))["MODEL"] == {
        **theirs_model,
        "DEVICE": "auto",
    }
