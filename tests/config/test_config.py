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


def _tri(mining_keys: dict) -> dict:
    return {"MODEL": {"LOSSES": {"TRI": mining_keys}}}


def test_an_alias_is_translated_per_file_so_children_override_bases(tmp_path):
    """fastreid's HARD_MINING sets MINING; a file overrides its base whichever spelling each
    uses, and MINING stays the one key that decides."""
    base = _write(tmp_path / "base.yml", _tri({"MINING": "batch_hard"}))
    child = _write(tmp_path / "child.yml", {"_BASE_": base, **_tri({"HARD_MINING": False})})
    cfg = load_config(child)
    assert cfg.MODEL.LOSSES.TRI.MINING == "weighted" and "HARD_MINING" not in cfg.MODEL.LOSSES.TRI
    hard = _write(tmp_path / "hard.yml", _tri({"HARD_MINING": True}))
    over = _write(tmp_path / "all.yml", {"_BASE_": hard, **_tri({"MINING": "all"})})
    assert load_config(hard).MODEL.LOSSES.TRI.MINING == "batch_hard"
    assert load_config(over).MODEL.LOSSES.TRI.MINING == "all"
    agree = _write(tmp_path / "agree.yml", _tri({"HARD_MINING": True, "MINING": "batch_hard"}))
    assert load_config(agree).MODEL.LOSSES.TRI.MINING == "batch_hard"
    assert load_config(None, ["MODEL.LOSSES.TRI.HARD_MINING", "True"]).MODEL.LOSSES.TRI.MINING == (
        "batch_hard"
    )


def test_an_alias_and_its_key_disagreeing_in_one_file_is_an_error(tmp_path):
    path = _write(tmp_path / "both.yml", _tri({"HARD_MINING": True, "MINING": "all"}))
    with pytest.raises(
        ConfigError,
        match=r"both.yml: MODEL.LOSSES.TRI.HARD_MINING True means MODEL.LOSSES.TRI.MINING "
        r"'batch_hard', but MODEL.LOSSES.TRI.MINING is also set, to 'all'; set only one of them",
    ):
        load_config(path)


@pytest.mark.parametrize("value", ["None", "1", "'yes'"])
def test_an_alias_value_outside_its_map_is_an_error(value):
    with pytest.raises(
        ConfigError,
        match=r"^command line: MODEL.LOSSES.TRI.HARD_MINING must be one of \[True, False\], got",
    ):
        load_config(None, ["MODEL.LOSSES.TRI.HARD_MINING", value])


def test_alias_declarations_are_checked():
    from reid.config import Alias, ConfigBlock, Key
    from reid.config.schema import Schema

    with pytest.raises(ValueError, match="an alias must not be a key of its block and must name"):
        ConfigBlock("X", "x", {"A": Key(1, "a")}, aliases={"B": Alias("C", {True: 1})})
    with pytest.raises(ValueError, match="an alias must not be a key of its block"):
        ConfigBlock("X", "x", {"A": Key(1, "a")}, aliases={"A": Alias("A", {True: 1})})
    schema = Schema()
    schema.declare(ConfigBlock("X", "x", {"A": Key(1, "a")}, aliases={"B": Alias("A", {True: 2})}))
    with pytest.raises(ConfigError, match="config key X.B of .* is an alias"):
        schema.declare(ConfigBlock("X", "x", {"B": Key(1, "b")}))
    with pytest.raises(ConfigError, match="config alias X.B of .* is taken"):
        schema.declare(ConfigBlock("X", "y", {"C": Key(1, "c")}, aliases={"B": Alias("C", {})}))


@pytest.mark.parametrize(
    "key, value, feature",
    [
        ("MODEL.QUEUE_SIZE", "4096", "the MoCo memory queue"),
        ("KD.MODEL_CONFIG", "['teacher.yml']", "knowledge distillation"),
        ("KD.MODEL_WEIGHTS", "['teacher.pth']", "knowledge distillation"),
        ("KD.EMA.ENABLED", "True", "the EMA teacher of knowledge distillation"),
        ("KD.EMA.MOMENTUM", "0.99", "the EMA teacher of knowledge distillation"),
    ],
)
def test_fastreid_keys_of_missing_features_accept_only_their_defaults(key, value, feature):
    cfg = load_config(None, [])  # fastreid's defaults load
    assert cfg.MODEL.QUEUE_SIZE == 8192 and cfg.KD.MODEL_CONFIG == [] and not cfg.KD.EMA.ENABLED
    with pytest.raises(
        ConfigError,
        match=rf"^{key} is .*: it configures {feature}.*, which reid does not have; leave it at "
        r"fastreid's default",
    ):
        load_config(None, [key, value])


def test_the_epoch_length_must_be_one_the_sampler_honours():
    load_config(None, ["DATALOADER.EPOCH_LENGTH", "images"])  # TrainingSampler's only epoch
    for length in ("identities", "images_ceil"):
        load_config(
            None,
            ["DATALOADER.SAMPLER_TRAIN", "NaiveIdentitySampler", "DATALOADER.EPOCH_LENGTH", length],
        )
        with pytest.raises(
            ConfigError,
            match=rf"^DATALOADER.EPOCH_LENGTH is '{length}', which TrainingSampler "
            r"\(DATALOADER.SAMPLER_TRAIN\) does not support; it supports \['images'\]",
        ):
            load_config(None, ["DATALOADER.EPOCH_LENGTH", length])
