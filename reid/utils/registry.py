"""Name -> object registries: what a YAML file names is what gets built.

Registering a component also declares its config block (``config_block`` argument or class
attribute, a :class:`reid.config.ConfigBlock`) in the schema, so a component is one file: its code,
its keys with their defaults and docs, and its registration.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from reid.config.schema import ConfigBlock, ConfigError, declare

T = TypeVar("T")


class RegistryKeyError(KeyError, ConfigError):
    """An unknown name: a lookup failure and, when a config names it, a config error.

    Its message prints as written (a plain KeyError quotes its message).
    """

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """A mapping from names to classes or functions, filled by the ``register`` decorator.

    Args:
        name: The kind of object ("LOSS", "BACKBONE", ...), shown in errors.
        contract: Called with every object registered; raises ``TypeError`` when the object
            lacks what this kind of component must provide.

    >>> TOY_REGISTRY = Registry("TOY")
    >>> @TOY_REGISTRY.register()
    ... def build_toy(cfg): ...
    >>> TOY_REGISTRY.get("build_toy").__name__
    'build_toy'
    """

    def __init__(self, name: str, contract: Callable[[Any], None] | None = None) -> None:
        self._name = name
        self._contract = contract
        self._obj_map: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    def _do_register(self, name: str, obj: Any, config_block: ConfigBlock | None) -> None:
        if name in self._obj_map:
            raise RegistryKeyError(
                f"An object named '{name}' was already registered in the '{self._name}' registry"
            )
        if self._contract is not None:
            self._contract(obj)
        block = config_block if config_block is not None else getattr(obj, "config_block", None)
        if block is not None:
            if not isinstance(block, ConfigBlock):
                raise TypeError(
                    f"{name}: config_block must be a reid.config.ConfigBlock, "
                    f"got {type(block).__name__}"
                )
            declare(block, owner=getattr(obj, "__module__", ""))
        self._obj_map[name] = obj

    def register(
        self,
        obj: T | None = None,
        *,
        name: str | None = None,
        config_block: ConfigBlock | None = None,
    ) -> Any:
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator.

        Args:
            obj: The class or function; omitted when used as ``@REGISTRY.register(...)``.
            name: The name configs use; default ``obj.__name__``.
            config_block: The keys the object reads; default its ``config_block`` attribute.
        """
        if obj is None:

            def deco(func_or_class: T) -> T:
                self._do_register(name or _name_of(func_or_class), func_or_class, config_block)
                return func_or_class

            return deco
        self._do_register(name or _name_of(obj), obj, config_block)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            registered = ", ".join(sorted(self._obj_map)) or "(none)"
            raise RegistryKeyError(
                f"No object named '{name}' in the '{self._name}' registry; "
                f"registered names: {registered}"
            )
        return self._obj_map[name]

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._obj_map))

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._obj_map.items())

    def __repr__(self) -> str:
        return f"Registry(name={self._name!r}, names={list(self.names())})"


def _name_of(obj: Any) -> str:
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"cannot infer a registry name for {obj!r}: pass name=...")
    return name


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of a package, so that a component file added to it registers itself.

    A component package's ``__init__`` calls ``import_submodules(__name__, __path__)``: adding a
    loss, dataset or backbone is then one file, with no import list to extend.
    """
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
