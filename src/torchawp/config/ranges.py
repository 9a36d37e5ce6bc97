"""One range system for every number torchawp reads, in a config or on a command line: a
field declared with :func:`bounded` carries its range beside its default, checked (NaN and
infinity refused) in one line that names the field, what is allowed and the value, by
:func:`check_ranges` for a config and by the command line's reader for a command's options."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``<`` where ``strict`` / ``high_strict``), with a ``note``
    said after the range (units, the authors' value), or ``says``: the whole of what is
    allowed, in words."""

    low: float = -math.inf
    strict: bool = False
    high: float = math.inf
    high_strict: bool = False
    note: str = ""
    says: str = ""

    def words(self, integer: bool, option: bool = False) -> str:
        """What is allowed: ``an integer >= 1``; a number as a config says it, ``> 0`` or
        ``in (0, 1]``, or as an option does, ``a number > 0`` or ``a number >= 0 and <= 1``."""
        if self.says:
            return self.says
        low = f"{'>' if self.strict else '>='} {self.low:g}"
        high = f"{'<' if self.high_strict else '<='} {self.high:g}"
        kind = "an integer " if integer else "a number " if option else ""
        if self.high == math.inf:
            text = kind + low
        elif option or integer:
            text = f"{kind}{low} and {high}"
        else:
            text = (f"in {'(' if self.strict else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_strict else ']'}")
        return f"{text} ({self.note})" if self.note else text

    def check(self, name: str, value: Any, integer: bool, option: bool = False) -> None:
        """One :class:`ConfigError` line if ``value`` (None always passes) is out of range."""
        if value is None:
            return
        if not (math.isfinite(value) and (value > self.low if self.strict else value >= self.low)
                and (value < self.high if self.high_strict else value <= self.high)):
            raise ConfigError(f"{name} must be {self.words(integer, option)} (got {value!r})")


def bounded(default: Any, low: float = -math.inf, *, strict: bool = False,
            high: float = math.inf, high_strict: bool = False, note: str = "", says: str = ""):
    """A numeric field's default and its :class:`Range`: ``x: int = bounded(1, 1)`` is an
    integer >= 1; ``bounded(0.5, 0, strict=True, high=1, high_strict=True)`` a number in
    (0, 1)."""
    return dataclasses.field(default=default, metadata={
        "range": Range(low, strict, high, high_strict, note, says)})


def is_integer(annotation) -> bool:
    """Whether a field's type is ``int`` (``Optional[int]`` and ``Annotated`` too)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation is int or int in typing.get_args(annotation)


def check_ranges(obj, path: tuple[str, ...] = ()) -> None:
    """Every :func:`bounded` field of the config ``obj`` and of the dataclasses it holds in
    its range, named by its path (``data.batch_size``)."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, path + (f.name,))
        elif "range" in f.metadata:
            f.metadata["range"].check(".".join(path + (f.name,)), value,
                                      is_integer(hints[f.name]))

