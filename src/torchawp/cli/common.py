"""What the commands share: argument parsing that turns errors into one line, progress lines."""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import warnings
from typing import Optional

from ..errors import ConfigError


def option_names(argv, joiner: str = "-", aliases: Optional[dict] = None) -> list[str]:
    """Option names read in either spelling, rewritten with ``joiner`` between words:
    ``--n_examples 5`` is ``--n-examples 5`` (``train``'s fields take ``"_"``: ``--out-dir`` is
    ``--out_dir``); values, ``--which ema_best`` included, are left as they are; ``aliases``
    maps a rewritten name to another."""
    other = "_" if joiner == "-" else "-"
    out = []
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            name = name.replace(other, joiner)
            arg = "--" + (aliases or {}).get(name, name) + eq + value
        out.append(arg)
    return out


def parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)`` with option names read in either spelling
    (:func:`option_names`), a bad or unknown argument raised as one :class:`ConfigError` line
    (an unknown option with the nearest known one)."""
    argv = option_names(argv)
    parser.exit_on_error = False

    def refuse(message: str):  # argparse's own errors (a missing argument): no usage dump
        raise ConfigError(message)

    parser.error = refuse
    try:
        args, extra = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from None
    if extra:
        first = extra[0]
        if not first.startswith("-"):
            raise ConfigError(f"unexpected argument {first!r} ({parser.prog} --help lists the "
                              f"arguments)")
        known = [o for a in parser._actions for o in a.option_strings]
        close = difflib.get_close_matches(first.split("=")[0], known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else f" ({parser.prog} --help lists them)"
        raise ConfigError(f"unknown option {first}{hint}")
    return args


class _FormerName(argparse.Action):
    """An option's former spelling: sets the option's value, with a one-line notice."""

    def __init__(self, option_strings, dest, current: str = "", **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.current = current

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(f"{option_string} is now {self.current}; the old name is read until the "
                      f"next release", FutureWarning)
        setattr(namespace, self.dest, values)


def option(parser, name: str, *, former: tuple[str, ...] = (), **kwargs) -> argparse.Action:
    """``parser.add_argument(name, **kwargs)``, and each ``former`` name kept working for one
    release: the same value, a one-line notice, hidden from ``--help``."""
    action = parser.add_argument(name, **kwargs)
    for old in former:
        parser.add_argument(old, dest=action.dest, type=kwargs.get("type"), current=name,
                            choices=kwargs.get("choices"), nargs=kwargs.get("nargs"),
                            action=_FormerName, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return action


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


class Ticker:
    """``progress(done, total)`` for a long loop: one line on stderr at most every ``every``
    seconds (and at the end) with what is done, what is left and the time it should take."""

    def __init__(self, what: str, unit: str, every: float = 10.0):
        import time

        self.what, self.unit, self.every, self.clock = what, unit, every, time.perf_counter
        self.start = self.last = self.clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.every and done < total:
            return
        self.last, spent = now, now - self.start
        left = spent / done * (total - done) if done else 0.0
        log(f"{self.what}: {done}/{total} {self.unit} ({spent:.0f} s"
            + (f", about {left:.0f} s left)" if done < total else ")"))


def log(text: str) -> None:
    """Progress of the long commands, on stderr (the results go to stdout)."""
    print(f"torchawp: {text}", file=sys.stderr, flush=True)
