"""Loading configs: `_BASE_` inheritance, command-line overrides, key and type validation.

yacs holds the schema; this module replaces its merge so that errors name the file, the key and
the closest valid key, ints are accepted where a float is expected, and other spellings of a few
keys are mapped onto ours: renamed groups (``KEY_ALIASES``) and the aliases config blocks declare
(:class:`~reid.config.schema.Alias`, e.g. fastreid's ``MODEL.LOSSES.TRI.HARD_MINING``), each file
translated on its own before it is merged over its bases.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from yacs.config import CfgNode

from .files import find_config_file
from .schema import SCHEMA, ConfigError
from .unsupported import check_unsupported

BASE_KEY = "_BASE_"

# fastreid (and its AdaSP fork) names -> our names, applied to files and overrides alike.
KEY_ALIASES: dict[str, str] = {
    "MODEL.LOSSES.ADASP": "MODEL.LOSSES.SP",
}


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of the defaults: every key that reid's components declare.

    Components declare their keys when their modules are imported; this imports reid's own, so
    the schema is complete. Import out-of-tree components before calling it.
    """
    importlib.import_module("reid.engine")
    return SCHEMA.root.clone()


def _all_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


def closest_key(cfg: CfgNode, key: str) -> str | None:
    """The valid key most similar to ``key`` (full dotted names compared), or None."""
    candidates = _all_keys(cfg)
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if match:
        return match[0]
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = [
        c
        for c in candidates
        if difflib.SequenceMatcher(None, c.rsplit(".", 1)[-1], leaf).ratio() > 0.75
    ]
    return by_leaf[0] if by_leaf else None


def _apply_alias(key: str) -> str:
    for old, new in KEY_ALIASES.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return key


def _alias_value(key: str, value: Any, values: Mapping[Any, Any], source: str) -> Any:
    """The target's value for alias ``key`` set to ``value`` (types must match: 1 is not True)."""
    if isinstance(value, str):
        value = parse_literal(value)
    for alias_value, target_value in values.items():
        if type(alias_value) is type(value) and alias_value == value:
            return target_value
    raise ConfigError(
        f"{source}: {key} must be one of {list(values)}, got {value!r} of type "
        f"{type(value).__name__}"
    )


def translate_aliases(items: Sequence[tuple[str, Any]], source: str) -> list[tuple[str, str, Any]]:
    """(key as written, canonical key, value) for each (key, value) pair of one source.

    Renamed groups (``KEY_ALIASES``) get their new names; a declared alias becomes the key it sets,
    with the translated value.

    Raises:
        ConfigError: An alias has a value it does not map, or the source also sets the alias's
            target to something else.
    """
    canonical = [(raw, _apply_alias(raw), value) for raw, value in items]
    direct = {key: value for _, key, value in canonical if key not in SCHEMA.aliases}
    out = []
    for raw, key, value in canonical:
        if key in SCHEMA.aliases:
            target, values = SCHEMA.aliases[key]
            translated = _alias_value(key, value, values, source)
            if target in direct and direct[target] != translated:
                raise ConfigError(
                    f"{source}: {key} {value!r} means {target} {translated!r}, but {target} is "
                    f"also set, to {direct[target]!r}; set only one of them"
                )
            key, value = target, translated
        out.append((raw, key, value))
    return out


def _translate_file(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A file's nested mapping with its aliases translated (so bases and children override the
    same key)."""
    items = flatten_keys(data)
    if not any(_apply_alias(key) in SCHEMA.aliases for key, _ in items):
        return data
    nested: dict[str, Any] = {}
    for _, key, value in translate_aliases(items, source):
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check ``value`` against the default's type.

    Ints become floats where a float is expected; lists and tuples interchange.
    """
    if isinstance(value, str) and not isinstance(default, str):
        # As yacs does: YAML gives "1e-5" and fastreid's "(\"CrossEntropyLoss\",)" as strings.
        value = parse_literal(value)
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return _as_floats_like(list(value), default)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(
        f"{source}: {key} expects a value of type {type(default).__name__} "
        f"(default {default!r}), got {value!r} of type {type(value).__name__}"
    )


def _as_floats_like(values: list[Any], default: Sequence[Any]) -> list[Any]:
    """Whole numbers become floats in a list of float defaults ([0.16, 1] -> [0.16, 1.0])."""
    if default and all(isinstance(d, float) for d in default):
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
    return values


def flatten_keys(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mapping -> [(dotted key, value)] in the mapping's order."""
    items = []
    for k, v in data.items():
        full = f"{prefix}{k}"
        if isinstance(v, Mapping):
            items.extend(flatten_keys(v, full + "."))
        else:
            items.append((full, v))
    return items


def merge_dict_into(cfg: CfgNode, data: Mapping[str, Any], source: str) -> None:
    """Merge a nested dict of overrides into ``cfg``, validating every key and type."""
    for raw_key, key, value in translate_aliases(flatten_keys(data), source):
        node: Any = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, CfgNode) or part not in node:
                if isinstance(node, CfgNode) or i == 0:
                    hint = closest_key(cfg, key)
                    hint_text = f"; did you mean '{hint}'?" if hint else ""
                    raise ConfigError(f"{source}: unknown config key '{raw_key}'{hint_text}")
                raise ConfigError(
                    f"{source}: '{'.'.join(parts[:i])}' is a value, not a group, "
                    f"so '{raw_key}' is not a key"
                )
            if i < len(parts) - 1:
                node = node[part]
        leaf = parts[-1]
        if isinstance(node[leaf], CfgNode):
            raise ConfigError(
                f"{source}: '{raw_key}' is a group of keys "
                f"({', '.join(node[leaf].keys())}), not a value"
            )
        node[leaf] = _coerce(key, value, node[leaf], source)


def load_yaml_with_base(path: str, _stack: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, resolving ``_BASE_`` (a path or a list, relative to the file)
    recursively."""
    path = os.path.abspath(os.path.expanduser(path))
    if path in _stack:
        chain = " -> ".join(_stack + (path,))
        raise ConfigError(f"{path}: _BASE_ inheritance forms a cycle: {chain}")
    if not os.path.isfile(path):
        where = f" (a _BASE_ of {_stack[-1]})" if _stack else ""
        raise ConfigError(f"config file not found: {path}{where}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must be a mapping of keys, got {type(data).__name__}"
        )
    bases = data.pop(BASE_KEY, None)
    data = _translate_file(data, path)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = os.path.expanduser(base)
        if not os.path.isabs(base_path):
            base_path = os.path.join(os.path.dirname(path), base_path)
        merged = _deep_merge(merged, load_yaml_with_base(base_path, _stack + (path,)))
    return _deep_merge(merged, data)


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def merge_from_file(cfg: CfgNode, path: str) -> None:
    merge_dict_into(cfg, load_yaml_with_base(path), source=path)


def parse_literal(text: str) -> Any:
    """A command-line or YAML string as the Python literal it spells, else the string itself.

    >>> parse_literal("[32, 16]"), parse_literal("1e-5"), parse_literal("Market1501")
    ([32, 16], 1e-05, 'Market1501')
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_from_list(cfg: CfgNode, opts: Sequence[str]) -> None:
    """Apply ``KEY VALUE`` pairs from the command line (values parsed as Python literals)."""
    if len(opts) % 2 != 0:
        raise ConfigError(
            "command line: overrides must be KEY VALUE pairs, "
            f"got an odd number of items: {list(opts)}"
        )
    for key, text in zip(opts[0::2], opts[1::2]):
        nested: dict[str, Any] = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_literal(text)
        merge_dict_into(cfg, nested, source="command line")


def load_config(config_file: str | None = None, opts: Iterable[str] = ()) -> CfgNode:
    """Defaults <- config file (with its bases) <- overrides, then the cross-field checks.

    ``config_file`` is a path, a run folder or a shipped config's name (see
    :func:`reid.config.files.find_config_file`).
    """
    cfg = get_cfg()
    if config_file:
        merge_from_file(cfg, find_config_file(config_file))
    merge_from_list(cfg, list(opts))
    check_config(cfg)
    return cfg


def check_config(cfg: CfgNode) -> None:
    """Rules that involve several components, checked before any work starts.

    A rule about one component's keys lives in that component's constructor (or its
    ``from_config``); the rules here are those no single component can see.
    """
    from reid.data.samplers import sampler_class  # the samplers import reid.config
    from reid.modeling.losses import LOSS_REGISTRY

    check_unsupported(cfg)

    sampler = sampler_class(cfg.DATALOADER.SAMPLER_TRAIN)
    if cfg.DATALOADER.EPOCH_LENGTH not in sampler.epoch_lengths:
        raise ConfigError(
            f"DATALOADER.EPOCH_LENGTH is {cfg.DATALOADER.EPOCH_LENGTH!r}, which "
            f"{cfg.DATALOADER.SAMPLER_TRAIN} (DATALOADER.SAMPLER_TRAIN) does not support; it "
            f"supports {list(sampler.epoch_lengths)}"
        )
    k = cfg.DATALOADER.NUM_INSTANCE
    if sampler.identity_batches and k == 1:
        needing = [
            name
            for name in cfg.MODEL.LOSSES.NAME
            if name in LOSS_REGISTRY and getattr(LOSS_REGISTRY.get(name), "needs_positives", False)
        ]
        if needing:
            raise ConfigError(
                f"DATALOADER.NUM_INSTANCE is 1, so no batch holds two images of one identity, and "
                f"{', '.join(needing)} (in MODEL.LOSSES.NAME) would be exactly 0 on every batch: "
                f"set DATALOADER.NUM_INSTANCE to 2 or more, or remove the loss"
            )
