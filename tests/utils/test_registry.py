import pytest

from reid.utils.registry import Registry, RegistryKeyError


def test_register_get_and_alias():
    reg = Registry("THING")

    @reg.register()
    class Alpha:
        pass

    reg.register(Alpha, name="A")
    assert reg.get("Alpha") is Alpha and reg.get("A") is Alpha
    assert "Alpha" in reg and "Beta" not in reg
    assert reg.names() == ("A", "Alpha")


def test_unknown_name_lists_registered_names():
    reg = Registry("LOSS")
    reg.register(lambda: 0, name="TripletLoss")
    reg.register(lambda: 0, name="CrossEntropyLoss")
    with pytest.raises(KeyError) as err:
        reg.get("TripletLos")
    assert str(err.value) == (
        "No object named 'TripletLos' in the 'LOSS' registry; "
        "registered names: CrossEntropyLoss, TripletLoss"
    )


def test_duplicate_registration_fails():
    reg = Registry("X")
    reg.register(int, name="n")
    with pytest.raises(RegistryKeyError, match="already registered"):
        reg.register(float, name="n")


@pytest.mark.parametrize(
    "key, value, registry, known",
    [
        ("MODEL.META_ARCHITECTURE", "Basline", "META_ARCH", "Baseline"),
        ("MODEL.BACKBONE.NAME", "build_resnet", "BACKBONE", "build_resnet_backbone"),
        ("MODEL.HEADS.NAME", "EmbedingHead", "HEAD", "EmbeddingHead"),
        ("MODEL.LOSSES.NAME", "('TripletLos',)", "LOSS", "TripletLoss"),
        ("MODEL.HEADS.CLS_LAYER", "ArcFase", "CLASSIFIER", "ArcFace"),
    ],
)
def test_every_model_registry_names_what_is_registered(key, value, registry, known):
    from reid.config import load_config
    from reid.modeling import build_model

    cfg = load_config(
        None,
        [
            key,
            value,
            "MODEL.DEVICE",
            "cpu",
            "MODEL.BACKBONE.DEPTH",
            "18x",
            "MODEL.BACKBONE.FEAT_DIM",
            "0",
            "MODEL.BACKBONE.PRETRAIN",
            "False",
            "MODEL.HEADS.NUM_CLASSES",
            "4",
        ],
    )
    with pytest.raises(KeyError) as err:
        build_model(cfg)
    assert f"in the '{registry}' registry" in str(err.value) and known in str(err.value)


def test_dataset_and_sampler_registries_name_what_is_registered():
    from reid.config import get_cfg
    from reid.data.datasets import build_dataset
    from reid.data.samplers import build_train_sampler

    cfg = get_cfg()
    with pytest.raises(KeyError, match="'DATASET' registry; registered names: .*Market1501"):
        build_dataset("Market1502", cfg)
    cfg.DATALOADER.SAMPLER_TRAIN = "PKSampler"
    with pytest.raises(
        ValueError,
        match="DATALOADER.SAMPLER_TRAIN: No object named 'PKSampler'.*NaiveIdentitySampler",
    ):
        build_train_sampler(cfg, [], rank=0, world_size=1, seed=0)
