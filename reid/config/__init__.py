"""Configs: the schema that components declare, YAML loading with ``_BASE_``, overrides, checks."""

from .config import (
    check_config,
    closest_key,
    get_cfg,
    load_config,
    load_yaml_with_base,
    merge_from_file,
    merge_from_list,
)
from .files import configs_dir, find_config_file, list_configs
from .schema import (
    SCHEMA,
    Alias,
    ConfigArgs,
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
    declare,
)

__all__ = [
    "SCHEMA",
    "Alias",
    "ConfigArgs",
    "ConfigBlock",
    "ConfigError",
    "InvalidArgument",
    "Key",
    "check_config",
    "closest_key",
    "configs_dir",
    "find_config_file",
    "configurable",
    "declare",
    "get_cfg",
    "list_configs",
    "load_config",
    "load_yaml_with_base",
    "merge_from_file",
    "merge_from_list",
]
