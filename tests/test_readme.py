"""The README's code blocks are true: Python blocks run (in a folder laid out as after the
quick-start), commands parse and their configs load, YAML blocks agree with the config files they
show."""

import importlib.util
import os
import re
import shlex

import pytest
import yaml

from reid.config import load_config
from reid.config.config import flatten_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
YAML_FILE = re.compile(r"`(configs/[\w./-]+\.ya?ml)`")


def _blocks(language):
    text = open(README, encoding="utf-8").read()
    found = []
    for match in BLOCK.finditer(text):
        if match.group(1) == language:
            found.append((text[: match.start()], match.group(2)))
    return found


def _commands(script):
    """Each ``python tools/X.py ...`` command of a shell block, as an argv list."""
    joined = script.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        for part in line.split("&&"):
            argv = shlex.split(part)
            if len(argv) >= 2 and argv[0] == "python" and argv[1].startswith("tools/"):
                commands.append(argv[1:])
    return commands


def _tool_parser(path):
    spec = importlib.util.spec_from_file_location(f"readme_tool_{os.path.basename(path)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.argument_parser()


COMMANDS = [argv for _, block in _blocks("bash") for argv in _commands(block)]


def test_the_readme_shows_commands():
    assert any(argv[0] == "tools/train_net.py" for argv in COMMANDS)


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_every_command_parses_and_its_config_loads(argv):
    tool = os.path.join(ROOT, argv[0])
    assert os.path.isfile(tool), f"README names {argv[0]}, which does not exist"
    args = _tool_parser(tool).parse_args(argv[1:])
    config_file = getattr(args, "config_file", None)
    if config_file:
        load_config(os.path.join(ROOT, config_file), getattr(args, "opts", None) or [])


YAML_BLOCKS = [(before, block) for before, block in _blocks("yaml")]


@pytest.mark.parametrize(
    "before,block", YAML_BLOCKS, ids=[f"yaml{i}" for i in range(len(YAML_BLOCKS))]
)
def test_every_yaml_block_shows_the_file_it_names(before, block):
    named = YAML_FILE.findall(before)
    assert named, "a YAML block must follow a sentence naming the file it shows"
    with open(os.path.join(ROOT, named[-1]), encoding="utf-8") as f:
        actual = dict(flatten_keys(yaml.safe_load(f)))
    shown = dict(flatten_keys(yaml.safe_load(block)))
    differing = {k: (v, actual.get(k, "<absent>")) for k, v in shown.items() if actual.get(k) != v}
    assert not differing, f"README's excerpt of {named[-1]} differs (shown, actual): {differing}"


PYTHON_BLOCKS = [block for _, block in _blocks("python")]


@pytest.fixture
def after_the_quickstart(tmp_path, monkeypatch, tiny_run, synthetic_root):
    """A folder laid out as after the quick-start, where the examples run: a trained run at
    logs/quickstart (the tiny one) and the synthetic data under datasets/."""
    os.makedirs(tmp_path / "logs")
    os.symlink(tiny_run, tmp_path / "logs" / "quickstart")
    os.symlink(synthetic_root, tmp_path / "datasets")
    monkeypatch.chdir(tmp_path)


def test_the_readme_shows_the_python_api():
    assert any("from reid import FeatureExtractor" in block for block in PYTHON_BLOCKS)


@pytest.mark.parametrize(
    "block", PYTHON_BLOCKS, ids=[f"python{i}" for i in range(len(PYTHON_BLOCKS))]
)
def test_every_python_block_runs(block, after_the_quickstart):
    exec(compile(block, README, "exec"), {"__name__": "readme"})
