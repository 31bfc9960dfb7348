"""Argument checks and shared values of the transform components."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.transforms import v2

from reid.config.schema import InvalidArgument

INTERPOLATIONS: dict[str, v2.InterpolationMode] = {
    "bicubic": v2.InterpolationMode.BICUBIC,
    "bilinear": v2.InterpolationMode.BILINEAR,
}

Size = Sequence[int]


def as_size(value: Size) -> tuple[int, int] | None:
    """(height, width) of a [height, width] pair of positive whole numbers, else None."""
    if len(value) != 2 or any(int(v) != v or v < 1 for v in value):
        return None
    return int(value[0]), int(value[1])


def size_pair(value: Size, argument: str) -> tuple[int, int]:
    """``value`` as (height, width); an :class:`InvalidArgument` naming ``argument`` otherwise."""
    size = as_size(value)
    if size is None:
        raise InvalidArgument(
            argument, f"must be [height, width] with positive whole numbers, got {list(value)}"
        )
    return size


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """The torchvision mode of "bicubic" or "bilinear"."""
    if name not in INTERPOLATIONS:
        raise InvalidArgument(
            "interpolation", f"must be one of {sorted(INTERPOLATIONS)}, got {name!r}"
        )
    return INTERPOLATIONS[name]


def probability(value: float, argument: str, allow_zero: bool = True) -> float:
    """``value`` checked to lie in [0, 1] (in (0, 1] with ``allow_zero=False``).

    A step that is switched on by its own ENABLED key rejects probability 0: it would never run,
    so the config would say one thing and train another.
    """
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1] (0 would never apply the step)"
        raise InvalidArgument(argument, f"must be a probability in {interval}, got {value}")
    return float(value)


def value_range(value: Sequence[float], argument: str, low: float = 0.0) -> tuple[float, float]:
    """A [min, max] pair with ``low`` < min <= max; an :class:`InvalidArgument` otherwise."""
    pair = [float(v) for v in value]
    if len(pair) != 2 or not low < pair[0] <= pair[1]:
        raise InvalidArgument(
            argument, f"must be [min, max] with {low} < min <= max, got {list(value)}"
        )
    return pair[0], pair[1]
