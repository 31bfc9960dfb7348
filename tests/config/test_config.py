import os

import pytest
import yaml

from reid.config import (
    ConfigError,
    check_config,
    get_cfg,
    load_config,
    load_yaml_with_base,
    merge_from_list,
)
from reid.config.config import merge_from_file


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


def test_defaults_follow_fastreid_names():
    cfg = get_cfg()
    assert cfg.MODEL.META_ARCHITECTURE == "Baseline"
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_backbone"
    assert cfg.MODEL.HEADS.NECK_FEAT == "before"
    assert cfg.DATALOADER.NUM_INSTANCE == 4
    assert cfg.SOLVER.IMS_PER_BATCH == 64


def test_base_inheritance_is_relative_and_chained(tmp_path):
    _write(tmp_path / "a" / "root.yml", {"SOLVER": {"BASE_LR": 0.1, "MAX_EPOCH": 7}, "SEED": 3})
    _write(tmp_path / "a" / "b" / "mid.yml", {"_BASE_": "../root.yml", "SOLVER": {"BASE_LR": 0.2}})
    leaf = _write(tmp_path / "c" / "leaf.yml", {"_BASE_": "../a/b/mid.yml", "SEED": 5})
    cfg = load_config(leaf)
    assert cfg.SOLVER.BASE_LR == 0.2  # mid overrides root
    assert cfg.SOLVER.MAX_EPOCH == 7  # inherited from root through mid
    assert cfg.SEED == 5  # leaf overrides root


def test_base_list_later_wins(tmp_path):
    one = _write(tmp_path / "one.yml", {"SEED": 1, "OUTPUT_DIR": "one"})
    two = _write(tmp_path / "two.yml", {"SEED": 2})
    leaf = _write(tmp_path / "leaf.yml", {"_BASE_": [os.path.basename(one), os.path.basename(two)]})
    cfg = load_config(leaf)
    assert (cfg.SEED, cfg.OUTPUT_DIR) == (2, "one")


def test_base_cycle_is_an_error(tmp_path):
    _write(tmp_path / "x.yml", {"_BASE_": "y.yml"})
    _write(tmp_path / "y.yml", {"_BASE_": "x.yml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml_with_base(str(tmp_path / "x.yml"))


def test_missing_base_names_the_file(tmp_path):
    leaf = _write(tmp_path / "leaf.yml", {"_BASE_": "nope.yml"})
    with pytest.raises(ConfigError, match="nope.yml"):
        load_config(leaf)


def test_command_line_overrides_win_and_are_parsed(tmp_path):
    leaf = _write(tmp_path / "leaf.yml", {"SOLVER": {"BASE_LR": 0.5}})
    cfg = load_config(
        leaf, ["SOLVER.BASE_LR", "0.25", "SOLVER.STEPS", "[3, 6]", "OUTPUT_DIR", "out/x"]
    )
    assert cfg.SOLVER.BASE_LR == 0.25
    assert list(cfg.SOLVER.STEPS) == [3, 6]
    assert cfg.OUTPUT_DIR == "out/x"


def test_typo_in_file_names_file_key_and_closest(tmp_path):
    leaf = _write(tmp_path / "leaf.yml", {"SOLVER": {"BASE_RL": 0.5}})
    with pytest.raises(ConfigError) as err:
        load_config(leaf)
    message = str(err.value)
    assert leaf in message and "SOLVER.BASE_RL" in message and "SOLVER.BASE_LR" in message


def test_typo_on_command_line_names_closest_key():
    with pytest.raises(
        ConfigError, match=r"MODEL\.BACKBONE\.DEPHT.*did you mean 'MODEL\.BACKBONE\.DEPTH'"
    ):
        load_config(None, ["MODEL.BACKBONE.DEPHT", "50x"])


def test_type_mismatch_is_an_error_but_int_for_float_is_fine():
    cfg = get_cfg()
    merge_from_list(cfg, ["SOLVER.BASE_LR", "1"])
    assert isinstance(cfg.SOLVER.BASE_LR, float) and cfg.SOLVER.BASE_LR == 1.0
    with pytest.raises(ConfigError, match="SOLVER.MAX_EPOCH expects a value of type int"):
        merge_from_list(cfg, ["SOLVER.MAX_EPOCH", "'many'"])


def test_fastreid_tuple_strings_and_exponents_are_decoded(tmp_path):
    path = tmp_path / "f.yml"
    path.write_text(
        'MODEL:\n  LOSSES:\n    NAME: ("CrossEntropyLoss", "TripletLoss",)\n'
        "SOLVER:\n  BASE_LR: 1e-5\n"
    )
    cfg = get_cfg()
    merge_from_file(cfg, str(path))
    assert list(cfg.MODEL.LOSSES.NAME) == ["CrossEntropyLoss", "TripletLoss"]
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-5)


def test_group_given_a_value_is_an_error():
    with pytest.raises(ConfigError, match="is a group of keys"):
        load_config(None, ["SOLVER", "3"])


def test_not_a_mapping_is_an_error(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(path))


def test_odd_number_of_overrides_is_an_error():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config(None, ["SEED"])


@pytest.mark.parametrize("loss", ["TripletLoss", "CircleLoss", "NTupletLoss"])
def test_a_loss_that_needs_positive_pairs_refuses_one_image_per_identity(loss):
    opts = ["DATALOADER.SAMPLER_TRAIN", "NaiveIdentitySampler", "DATALOADER.NUM_INSTANCE", "1"]
    opts += ["SOLVER.IMS_PER_BATCH", "16"]
    with pytest.raises(
        ConfigError,
        match=rf"DATALOADER.NUM_INSTANCE is 1.*{loss} \(in MODEL.LOSSES.NAME\) would be exactly 0",
    ):
        load_config(None, [*opts, "MODEL.LOSSES.NAME", f"('CrossEntropyLoss', '{loss}')"])


def test_one_image_per_identity_is_fine_without_such_losses_or_with_random_batches():
    opts = ["DATALOADER.NUM_INSTANCE", "1", "SOLVER.IMS_PER_BATCH", "16"]
    pk = ["DATALOADER.SAMPLER_TRAIN", "NaiveIdentitySampler"]
    load_config(None, [*opts, *pk, "MODEL.LOSSES.NAME", "('CrossEntropyLoss', 'ContrastiveLoss')"])
    load_config(
        None,
        [
            *opts,
            "MODEL.LOSSES.NAME",
            "('TripletLoss',)",
            "DATALOADER.SAMPLER_TRAIN",
            "TrainingSampler",
        ],
    )
    cfg = get_cfg()
    cfg.MODEL.LOSSES.NAME = ["TripletLoss"]
    cfg.DATALOADER.NUM_INSTANCE = 2
    check_config(cfg)


def test_merged_config_round_trips_through_dump(tmp_path):
    cfg = load_config(None, ["SOLVER.BASE_LR", "0.125", "DATASETS.NAMES", "('Synthetic',)"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.dump())
    again = load_config(str(path))
    assert again == cfg
