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
        "No object named 'TripletLos' in the 'LOSS' registry; registered names: CrossEntropyLoss, TripletLoss"
    )


def test_duplicate_registration_fails():
    reg = Registry("X")
    reg.register(int, name="n")
    with pytest.raises(RegistryKeyError, match="already registered"):
        reg.register(float, name="n")
