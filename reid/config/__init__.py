from .config import (
    ConfigError,
    check_config,
    closest_key,
    get_cfg,
    load_config,
    load_yaml_with_base,
    merge_from_file,
    merge_from_list,
)

__all__ = [
    "ConfigError",
    "check_config",
    "closest_key",
    "get_cfg",
    "load_config",
    "load_yaml_with_base",
    "merge_from_file",
    "merge_from_list",
]
