"""What the commands share: argument parsing that turns errors into one line, progress lines."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError


def parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)``, a bad argument raised as one :class:`ConfigError` line."""
    parser.exit_on_error = False
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from None


def log(text: str) -> None:
    """Progress of the long commands, on stderr (the results go to stdout)."""
    print(f"torchawp: {text}", file=sys.stderr, flush=True)
