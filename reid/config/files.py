"""Where the shipped configs are, and config names that are not paths.

The configs travel with the package: a wheel installs ``configs/`` as ``reid/configs/`` (package
data), and a source checkout keeps it next to ``reid/``. ``--config-file`` (and
:func:`reid.config.load_config`) takes a path; a name that is not an existing file is looked up
among the shipped configs, with or without its leading ``configs/``: after ``pip install``,
``reid-train --config-file Synthetic/quickstart.yml`` finds the quick-start from any folder.
A path that exists always wins over a shipped config of the same name, and a run's output folder
stands for the ``config.yaml`` the run wrote there.
"""

from __future__ import annotations

import os

from .schema import ConfigError

__all__ = ["configs_dir", "find_config_file", "list_configs"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_SUFFIXES = (".yml", ".yaml")
RUN_CONFIG = "config.yaml"  # what a run writes into its OUTPUT_DIR


def configs_dir() -> str:
    """The folder of the shipped configs: ``reid/configs`` in an installed wheel, else the
    checkout's ``configs/`` next to ``reid/``.

    Raises:
        FileNotFoundError: Neither exists (a package installed without its data).
    """
    for candidate in (
        os.path.join(_PACKAGE_DIR, "configs"),
        os.path.join(os.path.dirname(_PACKAGE_DIR), "configs"),
    ):
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(
        f"the configs shipped with reid are missing: neither {_PACKAGE_DIR}/configs (a wheel) "
        f"nor {os.path.dirname(_PACKAGE_DIR)}/configs (a checkout) exists"
    )


def list_configs() -> list[str]:
    """The shipped configs' names (paths relative to :func:`configs_dir`, ``/``-separated)."""
    root = configs_dir()
    names = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(CONFIG_SUFFIXES):
                rel = os.path.relpath(os.path.join(folder, name), root)
                names.append(rel.replace(os.sep, "/"))
    return sorted(names)


def find_config_file(name: str) -> str:
    """The config file that ``name`` means: an existing file, a run folder's ``config.yaml``, else
    a shipped config.

    Args:
        name: A path; a run's OUTPUT_DIR (its ``config.yaml``); or a shipped config's name
            relative to the configs folder, optionally starting with ``configs/``
            (``Synthetic/quickstart.yml``, ``configs/Market1501/bagtricks_R50.yml``).

    Returns:
        The path to read.

    Raises:
        ConfigError: Neither a file nor a shipped config; the message names both places.

    >>> os.path.relpath(find_config_file("Synthetic/quickstart.yml"), configs_dir())
    'Synthetic/quickstart.yml'
    """
    expanded = os.path.expanduser(name)
    if os.path.isfile(expanded):
        return expanded
    if os.path.isdir(expanded) and os.path.isfile(os.path.join(expanded, RUN_CONFIG)):
        return os.path.join(expanded, RUN_CONFIG)
    relative = name.replace("\\", "/")
    if relative.startswith("configs/"):
        relative = relative[len("configs/") :]
    root = configs_dir()
    if not os.path.isabs(expanded) and not relative.startswith("../"):
        shipped = os.path.join(root, *relative.split("/"))
        if os.path.isfile(shipped):
            return shipped
    raise ConfigError(
        f"config file not found: {name} is neither a file nor a config shipped with reid "
        f"(in {root}; e.g. Synthetic/quickstart.yml)"
    )
