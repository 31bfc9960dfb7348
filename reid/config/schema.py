"""The config schema, assembled from blocks that components declare next to their code.

A component (a loss, a head, a dataset, the evaluator, ...) declares the keys it reads as a
:class:`ConfigBlock`: a dotted path and, per key, its default and what it means. Declaring a block
(directly with :func:`declare`, or by registering a component whose ``config_block`` it is)
merges its keys into the one schema behind :func:`reid.config.get_cfg`; a key declared twice is
an error naming both owners. ``tools/config_keys.py`` prints every key with its meaning.

    TRI_BLOCK = ConfigBlock(
        "MODEL.LOSSES.TRI",
        "TripletLoss: hinge or soft margin over mined triplets.",
        {"MARGIN": Key(0.3, "Hinge margin m."), "SCALE": Key(1.0, "Weight in the total loss.")},
    )

:func:`configurable` lets a component take plain arguments or a config: ``Cls(cfg, ...)`` asks
``Cls.from_config(cfg, ...)`` for the arguments. An :class:`InvalidArgument` raised by the
constructor then names the config key the argument came from.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from yacs.config import CfgNode

__all__ = [
    "Alias",
    "ConfigArgs",
    "ConfigBlock",
    "ConfigError",
    "InvalidArgument",
    "Key",
    "SCHEMA",
    "configurable",
    "declare",
]


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, bad value or broken file."""


class InvalidArgument(ValueError):
    """A constructor argument with a value the component cannot honour.

    ``str()`` reads "<argument> <problem>"; built from a config, the argument becomes its key:
    "MODEL.LOSSES.TRI.MARGIN must be >= 0, got -1".
    """

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument} {problem}")
        self.argument = argument
        self.problem = problem


@dataclass(frozen=True)
class Key:
    """One config key: its default (which also fixes its type) and what it means."""

    default: Any
    doc: str


@dataclass(frozen=True)
class Alias:
    """Another spelling of a key of the same block, e.g. fastreid's, translated on loading.

    A file or override that sets the alias sets ``target`` to ``values[value]`` instead; the
    alias is not a key of the config, so one key stays the only source of truth. A value outside
    ``values``, or a source setting both spellings to different things, is an error.

    Attributes:
        target: The key (name in the block) the alias sets.
        values: Alias value -> the target's value.
    """

    target: str
    values: Mapping[Any, Any]


class ConfigBlock:
    """Keys under one dotted path of the schema; a key name may itself be dotted
    ("CROP.ENABLED"). ``aliases``: other spellings of its keys (:class:`Alias`)."""

    def __init__(
        self,
        path: str,
        doc: str,
        keys: Mapping[str, Key],
        aliases: Mapping[str, Alias] | None = None,
    ) -> None:
        if path and any(not part for part in path.split(".")):
            raise ValueError(
                "a config block's path is dotted ('MODEL.LOSSES.TRI') or '' (top level), "
                f"got {path!r}"
            )
        for name, key in keys.items():
            if not isinstance(key, Key):
                raise TypeError(
                    f"{path}.{name}: declare keys as Key(default, doc), got {type(key).__name__}"
                )
            if not key.doc.strip():
                raise ValueError(f"{path}.{name}: every key needs a doc saying what it means")
        for name, alias in (aliases or {}).items():
            if name in keys or alias.target not in keys:
                raise ValueError(
                    f"{path}.{name}: an alias must not be a key of its block and must name one "
                    f"(target {alias.target!r})"
                )
        self.path = path
        self.doc = doc
        self.keys = dict(keys)
        self.aliases = dict(aliases or {})
        self.owner = ""

    def full_key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def read(self, cfg: CfgNode) -> CfgNode:
        """This block's node of ``cfg``."""
        node: Any = cfg
        for part in self.path.split(".") if self.path else ():
            if not isinstance(node, CfgNode) or part not in node:
                raise ConfigError(
                    f"the config has no block {self.path}: was the module declaring it imported?"
                )
            node = node[part]
        return node

    def value(self, cfg: CfgNode, name: str) -> Any:
        node: Any = self.read(cfg)
        for part in name.split("."):
            node = node[part]
        return node

    def arguments(
        self,
        cfg: CfgNode,
        skip: tuple[str, ...] = (),
        rename: Mapping[str, str] | None = None,
    ) -> ConfigArgs:
        """Constructor arguments from this block: key ``FEAT_KEY`` -> argument ``feat_key``.

        ``skip``: keys that are not arguments (e.g. a loss's SCALE, read by the loss set);
        ``rename``: key -> argument name where the lower-cased key is not it.
        """
        rename = dict(rename or {})
        args = ConfigArgs()
        for name in self.keys:
            if name in skip:
                continue
            arg = rename.get(name, name.lower().replace(".", "_"))
            args.set(arg, self.value(cfg, name), self.full_key(name))
        return args

    def __iter__(self) -> Iterator[tuple[str, Key]]:
        return iter(self.keys.items())

    def __repr__(self) -> str:
        return f"ConfigBlock({self.path!r}, keys={list(self.keys)})"


class ConfigArgs(dict):
    """Keyword arguments read from a config, remembering the key each one came from."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[str, str] = {}

    def set(self, argument: str, value: Any, key: str | None = None) -> ConfigArgs:
        self[argument] = value
        if key is not None:
            self.sources[argument] = key
        return self

    def update_from(self, other: ConfigArgs) -> ConfigArgs:
        self.update(other)
        self.sources.update(other.sources)
        return self


class Schema:
    """The root node of every key, and which block declared each one."""

    def __init__(self) -> None:
        self.root = CfgNode()
        self.blocks: list[ConfigBlock] = []
        self._owner: dict[str, ConfigBlock] = {}
        # full alias key -> (full target key, alias value -> target value)
        self.aliases: dict[str, tuple[str, Mapping[Any, Any]]] = {}

    def declare(self, block: ConfigBlock, owner: str = "") -> ConfigBlock:
        if any(b is block for b in self.blocks):
            return block
        block.owner = block.owner or owner
        for name, key in block.keys.items():
            full = block.full_key(name)
            if full in self.aliases:
                raise ConfigError(f"config key {full} of {block.owner or block.path} is an alias")
            if full in self._owner:
                other = self._owner[full]
                raise ConfigError(
                    f"config key {full} is declared twice: by {other.owner or other.path} and by "
                    f"{block.owner or block.path}"
                )
            parts = full.split(".")
            node = self.root
            for i, part in enumerate(parts[:-1]):
                if part not in node:
                    node[part] = CfgNode()
                elif not isinstance(node[part], CfgNode):
                    raise ConfigError(
                        f"{'.'.join(parts[: i + 1])} is a value, so {full} cannot be a key"
                    )
                node = node[part]
            if isinstance(node.get(parts[-1]), CfgNode):
                raise ConfigError(f"{full} is a group of keys and cannot be declared as a value")
            node[parts[-1]] = _copy_default(key.default)
            self._owner[full] = block
        for name, alias in block.aliases.items():
            full = block.full_key(name)
            if full in self._owner or full in self.aliases:
                raise ConfigError(f"config alias {full} of {block.owner or block.path} is taken")
            self.aliases[full] = (block.full_key(alias.target), dict(alias.values))
        self.blocks.append(block)
        return block

    def owner_of(self, full_key: str) -> ConfigBlock | None:
        return self._owner.get(full_key)

    def documented_keys(self) -> list[tuple[str, Key, ConfigBlock]]:
        """Every declared key with its declaration and block, sorted by key."""
        items = []
        for full, block in self._owner.items():
            name = full[len(block.path) + 1 :] if block.path else full
            items.append((full, block.keys[name], block))
        return sorted(items, key=lambda item: item[0])


def _copy_default(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_copy_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy_default(v) for k, v in value.items()}
    return value


SCHEMA = Schema()


def declare(block: ConfigBlock, owner: str | None = None) -> ConfigBlock:
    """Merge ``block`` into the schema (idempotent for the same block); returns it.

    Args:
        block: The keys to declare.
        owner: The module that reads them (default: the caller's module), shown in the reference.
    """
    if owner is None:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        owner = caller.f_globals.get("__name__", "") if caller is not None else ""
    return SCHEMA.declare(block, owner=owner)


def _called_with_cfg(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    return (bool(args) and isinstance(args[0], CfgNode)) or isinstance(kwargs.get("cfg"), CfgNode)


def configurable(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate ``__init__`` so that ``Cls(cfg, *args, **kwargs)`` builds from a config.

    The class defines ``from_config(cls, cfg, *args, **kwargs) -> dict`` (a :class:`ConfigArgs`
    names the key behind each argument); any other call passes its arguments to ``__init__``.
    """

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        if not _called_with_cfg(args, kwargs):
            init(self, *args, **kwargs)
            return
        from_config = getattr(type(self), "from_config", None)
        if from_config is None:
            raise TypeError(
                f"{type(self).__name__} was given a config but defines no from_config classmethod"
            )
        explicit = from_config(*args, **kwargs)
        try:
            init(self, **explicit)
        except InvalidArgument as e:
            sources = getattr(explicit, "sources", {})
            if e.argument in sources:
                raise ConfigError(f"{sources[e.argument]} {e.problem}") from None
            raise

    return wrapped
