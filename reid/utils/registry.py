"""Name -> object registries: what a YAML file names is what gets built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class RegistryKeyError(KeyError):
    """A KeyError whose message prints as written (KeyError quotes its message)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """A mapping from names to classes or functions, filled by the ``register`` decorator.

    >>> BACKBONE_REGISTRY = Registry("BACKBONE")
    >>> @BACKBONE_REGISTRY.register()
    ... def build_resnet_backbone(cfg): ...
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map:
            raise RegistryKeyError(
                f"An object named '{name}' was already registered in the '{self._name}' registry"
            )
        self._obj_map[name] = obj

    def register(self, obj: T | None = None, *, name: str | None = None) -> Any:
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""
        if obj is None:

            def deco(func_or_class: T) -> T:
                self._do_register(name or func_or_class.__name__, func_or_class)
                return func_or_class

            return deco
        self._do_register(name or obj.__name__, obj)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            registered = ", ".join(sorted(self._obj_map)) or "(none)"
            raise RegistryKeyError(
                f"No object named '{name}' in the '{self._name}' registry; registered names: {registered}"
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
