"""Packaging: every tool has a command, tools are safe to import from an installed package, and a
built wheel carries the configs and the commands, which work from any folder once installed."""

import ast
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")


def _setup_literal(name):
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py defines no {name}")


def _tool_files():
    return sorted(n[:-3] for n in os.listdir(TOOLS) if n.endswith(".py") and n != "__init__.py")


def _functions(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_every_tool_has_a_command_and_every_command_a_tool_function():
    scripts = _setup_literal("CONSOLE_SCRIPTS")
    targets = {t.split(":")[0]: t.split(":")[1] for t in scripts.values()}
    assert set(_tool_files()) <= set(targets), "a tool without a reid-* command in setup.py"
    missing = {
        module for module in targets if not os.path.isfile(os.path.join(TOOLS, f"{module}.py"))
    }
    assert not missing, f"commands for tools that do not exist: {missing}"
    for module, function in targets.items():
        assert function in _functions(os.path.join(TOOLS, f"{module}.py")), (module, function)
    assert all(command.startswith("reid-") for command in scripts)


def test_tools_touch_sys_path_only_when_run_as_scripts():
    """Installed, tools/ is reid/tools: its parent folder is reid/, which must never go on
    sys.path (reid/tables would shadow PyTables, reid/config any `config` module, ...)."""
    for name in _tool_files():
        source = open(os.path.join(TOOLS, f"{name}.py"), encoding="utf-8").read()
        for line in (ln for ln in source.splitlines() if "sys.path.insert" in ln):
            before = source[: source.index(line)].rstrip().splitlines()[-1]
            assert before == "if not __package__:", f"tools/{name}.py: {line.strip()}"


def _copy_source(target):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for item in ("setup.py", "pyproject.toml", "README.md", "reid", "tools", "configs"):
        source = os.path.join(ROOT, item)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, item), ignore=ignore)
        else:
            shutil.copy(source, target)


@pytest.mark.slow
def test_wheel_carries_configs_and_commands_that_work_when_installed(tmp_path):
    source, wheels = tmp_path / "src", tmp_path / "wheels"
    source.mkdir()
    _copy_source(str(source))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            "-q",
        ],
        check=True,
    )
    (wheel,) = os.listdir(wheels)
    assert wheel.startswith("reid_toolkit-")  # the distribution name; the import name is reid
    with zipfile.ZipFile(wheels / wheel) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = z.read(info).decode()
        metadata = z.read(info.replace("entry_points.txt", "METADATA")).decode()
    assert "Name: reid-toolkit" in metadata
    shipped = {
        os.path.relpath(os.path.join(folder, n), os.path.join(ROOT, "configs")).replace(os.sep, "/")
        for folder, _, files in os.walk(os.path.join(ROOT, "configs"))
        for n in files
        if n.endswith((".yml", ".yaml"))
    }
    assert "Synthetic/quickstart.yml" in shipped and "papers/tables/adasp.yaml" in shipped
    assert {n[len("reid/configs/") :] for n in names if n.startswith("reid/configs/")} == shipped
    assert {f"reid/tools/{t}.py" for t in _tool_files()} <= names
    for command, target in _setup_literal("CONSOLE_SCRIPTS").items():
        assert f"{command} = reid.tools.{target}" in entry_points

    # Installed into a fresh environment (sharing this one's dependencies), run from elsewhere.
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    python = str(venv / "bin" / "python")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheels / wheel),
        ],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*argv):
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = run(
        python,
        "-c",
        "import reid.config as c; print(c.find_config_file('Synthetic/quickstart.yml'))",
    )
    assert where.strip() == str(
        venv
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
        / "reid"
        / "configs"
        / "Synthetic"
        / "quickstart.yml"
    )
    assert run(str(venv / "bin" / "reid-config-keys")).startswith("# Config keys")
    assert "adasp: AdaSP" in run(str(venv / "bin" / "reid-reproduce"), "--list")
    for command in ("reid-train", "reid-extract", "reid-search", "reid-export"):
        assert "usage:" in run(str(venv / "bin" / command), "--help")
    # The quick-start's config by name through the command, from a folder without configs/: it
    # loads and stops at the missing weights, before writing anything into the run's folder.
    done = subprocess.run(
        [
            str(venv / "bin" / "reid-train"),
            "--config-file",
            "Synthetic/quickstart.yml",
            "--eval-only",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "--eval-only needs MODEL.WEIGHTS" in done.stderr, done.stderr
    assert not os.path.exists(work / "logs" / "quickstart" / "config.yaml")
