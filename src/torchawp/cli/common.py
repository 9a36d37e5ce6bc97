"""What the commands share: argument parsing that turns errors into one line, progress lines."""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import ConfigError


def parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)``, a bad argument raised as one :class:`ConfigError` line."""
    parser.exit_on_error = False
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from None


def integer(low: int):
    """argparse ``type``: an integer ``>= low``; anything else is one line naming the option,
    the value and what is allowed (through :func:`parse`)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low} (got {text!r})")
        return value
    return convert


def number(low: float = 0.0, strict: bool = True, high: float = math.inf):
    """argparse ``type``: a finite number ``> low`` (``>= low`` unless ``strict``), ``<= high``."""
    what = f"a number {'>' if strict else '>='} {low:g}" + (
        f" and <= {high:g}" if high < math.inf else "")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > low if strict else value >= low)
                and value <= high):
            raise argparse.ArgumentTypeError(f"must be {what} (got {text!r})")
        return value
    return convert


def log(text: str) -> None:
    """Progress of the long commands, on stderr (the results go to stdout)."""
    print(f"torchawp: {text}", file=sys.stderr, flush=True)
