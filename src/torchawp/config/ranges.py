"""One range system for every number torchawp reads, in a config or on a command line: a
field declared with :func:`bounded` carries its range beside its default, and
:func:`check_ranges` checks every such field of a dataclass (nested ones too), NaN and
infinity refused, in one line that names the field, what is allowed and the value."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``<`` where ``strict`` / ``high_strict``), with a ``note``
    said after the range (units, the authors' value)."""

    low: float = -math.inf
    strict: bool = False
    high: float = math.inf
    high_strict: bool = False
    note: str = ""

    def words(self, integer: bool) -> str:
        """``an integer >= 1``, ``a number in (0, 1]`` ..."""
        kind = "an integer" if integer else "a number"
        if self.high == math.inf:
            text = f"{kind} {'>' if self.strict else '>='} {self.low:g}"
        elif self.low == -math.inf:
            text = f"{kind} {'<' if self.high_strict else '<='} {self.high:g}"
        else:
            text = (f"{kind} in {'(' if self.strict else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_strict else ']'}")
        return f"{text} ({self.note})" if self.note else text

    def check(self, name: str, value: Any, integer: bool) -> None:
        """One :class:`ConfigError` line if ``value`` (None always passes) is out of range."""
        if value is None:
            return
        if not (math.isfinite(value) and (value > self.low if self.strict else value >= self.low)
                and (value < self.high if self.high_strict else value <= self.high)):
            raise ConfigError(f"{name} must be {self.words(integer)} (got {value})")


def bounded(default: Any, low: float = -math.inf, *, strict: bool = False,
            high: float = math.inf, high_strict: bool = False, note: str = ""):
    """A numeric field's default and its :class:`Range`: ``x: int = bounded(1, 1)`` is an
    integer >= 1; ``bounded(0.5, 0, strict=True, high=1, high_strict=True)`` a number in
    (0, 1)."""
    return dataclasses.field(default=default,
                             metadata={"range": Range(low, strict, high, high_strict, note)})


def is_integer(annotation) -> bool:
    """Whether a field's type is ``int`` (``Optional[int]`` and ``Annotated`` too)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation is int or int in typing.get_args(annotation)


def check_ranges(obj, name: Callable[[tuple[str, ...]], str] = ".".join,
                 path: tuple[str, ...] = ()) -> None:
    """Every :func:`bounded` field of the dataclass ``obj`` and of the dataclasses it holds
    in its range; ``name`` spells a field's path (``("data", "batch_size")`` ->
    ``data.batch_size``) in the message."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, name, path + (f.name,))
        elif "range" in f.metadata:
            f.metadata["range"].check(name(path + (f.name,)), value, is_integer(hints[f.name]))

