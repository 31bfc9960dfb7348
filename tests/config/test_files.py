"""Config names: a path wins, a run folder means its config.yaml, else a shipped config by name."""

import os

import pytest

from reid.config import ConfigError, configs_dir, find_config_file, list_configs, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_configs_are_the_checkouts_and_found_by_name_from_anywhere(tmp_path, monkeypatch):
    assert configs_dir() == os.path.join(ROOT, "configs")
    names = list_configs()
    assert "Synthetic/quickstart.yml" in names and "papers/tables/adasp.yaml" in names
    assert names == sorted(names) and all(n.endswith((".yml", ".yaml")) for n in names)
    monkeypatch.chdir(tmp_path)
    quick = os.path.join(ROOT, "configs", "Synthetic", "quickstart.yml")
    assert find_config_file("Synthetic/quickstart.yml") == quick
    assert find_config_file("configs/Synthetic/quickstart.yml") == quick
    assert load_config("Synthetic/quickstart.yml").OUTPUT_DIR == "logs/quickstart"


def test_an_existing_path_wins_and_a_run_folder_means_its_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("configs/Synthetic")
    with open("configs/Synthetic/quickstart.yml", "w") as f:
        f.write("OUTPUT_DIR: mine\n")
    assert (
        find_config_file("configs/Synthetic/quickstart.yml") == "configs/Synthetic/quickstart.yml"
    )
    assert load_config("configs/Synthetic/quickstart.yml").OUTPUT_DIR == "mine"
    os.makedirs("run")
    with open("run/config.yaml", "w") as f:
        f.write("OUTPUT_DIR: run\n")
    assert find_config_file("run") == os.path.join("run", "config.yaml")
    assert load_config("run").OUTPUT_DIR == "run"


@pytest.mark.parametrize(
    "name", ["nope.yml", "Synthetic/nope.yml", "../configs/Base-bagtricks.yml"]
)
def test_unknown_names_say_where_they_were_looked_for(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"config file not found: {name} is neither a file nor"):
        find_config_file(name)
    os.makedirs("empty")
    with pytest.raises(ConfigError, match="config file not found: empty"):
        find_config_file("empty")  # a folder without config.yaml is not a run
