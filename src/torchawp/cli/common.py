"""What the commands share: one way to read a command line, errors as one line, progress lines.

Every command declares its options as a dataclass (a field is an option, the comment above it
the help) and reads them with :func:`parse`, which hands the dataclass to tyro: options are
spelled with hyphens (``--n-examples``, ``--data.batch-size``), the underscore spelling is read
the same way in every command, a ``bool`` field is a flag pair (``--autoattack`` /
``--no-autoattack``).
What tyro refuses is said in one line by :func:`explain`, which reads the same dataclass."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import io
import sys
import typing
import warnings
from typing import Any, Literal, Optional

import tyro
import yaml

from ..config.ranges import is_integer
from ..config.recipes import type_words, unwrap_optional
from ..errors import ConfigError
from ..io.checkpoint import WHICH

REGISTRY = tyro.constructors.ConstructorRegistry()
BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_POSITIONAL = typing.get_args(tyro.conf.Positional[int])[1]
_ARG = type(tyro.conf.arg())  # tyro.conf.arg(name=...): an option named other than its field


def was(*names: str):
    """``Annotated[type, was("--out")]``: the option's former names, read by tyro as aliases
    (each with a one-line notice, :func:`current_spellings`) until the next release."""
    return tyro.conf.arg(aliases=names)


def positional(metavar: str, annotation: Any = str):
    """The type of a positional argument, shown in usage, help and errors as ``metavar``
    (``PATH = positional("PATH")`` beside the dataclass, then ``path: PATH`` in it)."""
    return typing.Annotated[annotation, tyro.conf.Positional, tyro.conf.arg(metavar=metavar)]


def option(annotation: Any, help: str):
    """The type of an option several commands share, with its help, so that every command
    spells and explains it the same way."""
    return typing.Annotated[annotation, tyro.conf.arg(help=help)]


# a run directory or checkpoint, the argument most commands take first
PATH = positional("PATH")
# the options the commands that open a model share
DEVICE = option(str, "auto (cuda if present, else cpu), cpu, cuda, cuda:N")
DATA_DIR = option(Optional[str], "where the dataset's files are; None: the run's")
SELECTION = option(WHICH, "for a run directory: which checkpoint(s); all: best, last and, "
                   "with a weight average from --ema, ema_best and ema_last; both: best and "
                   "last; ema: ema_best and ema_last")
ONE = option(WHICH, "for a run directory: which checkpoint (of --which's names, one: best, "
             "last, ema_best or ema_last)")
THREAT_MODEL = option(Literal["Linf", "L2"], "the --robustbench entry's leaderboard (Linf: eps "
                      "8/255; L2: 0.5)")
MODEL_DIR = option(str, "RobustBench's model folder")


def _markers(hint) -> tuple:
    """The ``Annotated`` metadata of a field's type (tyro's markers among them)."""
    return typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()


@REGISTRY.primitive_rule
def _yaml_mapping(info):
    """A ``dict`` field (model or method arguments) is one YAML mapping: ``{width: 16}``."""
    if info.type_origin is not dict:
        return None

    def read(args: list[str]) -> dict:
        try:
            value = yaml.safe_load(args[0])
        except yaml.YAMLError:
            value = None
        if not isinstance(value, dict):
            raise ValueError(f"not a YAML mapping: {args[0]!r}")
        return value

    return tyro.constructors.PrimitiveConstructorSpec(
        nargs=1, metavar="YAML", instance_from_str=read,
        is_instance=lambda value: isinstance(value, dict),
        str_from_instance=lambda value: [yaml.safe_dump(value, default_flow_style=True).strip()])


@REGISTRY.primitive_rule
def _list(info):
    """A list of integers, numbers or words: ``--optim.milestones 100 150``, or as one YAML
    list, ``[100, 150]`` (as recipes write it; ``[]`` for none)."""
    args = typing.get_args(info.type)
    if (info.type_origin is not list or len(args) != 1 or args[0] not in (int, float, str)
            or tyro.conf.UseAppendAction in info.markers):  # --x A --x B: tyro's own
        return None
    kind = args[0]

    def read(values: list[str]) -> list:
        if not values:  # a bare --x is a slip, not an empty list (that is [])
            raise ValueError("no value")
        if len(values) == 1 and values[0].startswith("["):
            try:
                values = yaml.safe_load(values[0])
            except yaml.YAMLError:
                values = None
            if not isinstance(values, list):
                raise ValueError("not a YAML list")
        items = [kind(v) if isinstance(v, str) else v for v in values]
        if not all(isinstance(v, kind) and not isinstance(v, bool) or kind is float
                   and isinstance(v, int) for v in items):
            raise ValueError(f"not a list of {kind.__name__}")
        return items

    return tyro.constructors.PrimitiveConstructorSpec(
        nargs="*", metavar=f"{kind.__name__.upper()} ...", instance_from_str=read,
        is_instance=lambda value: isinstance(value, list),
        str_from_instance=lambda value: [str(v) for v in value])


@dataclasses.dataclass(frozen=True)
class _Option:
    name: str        # as help shows it: --data.batch-size
    annotation: Any  # the field's type, as declared
    kind: str        # "flag" (no value), "value" (one) or "values" (one or more)
    required: bool = False


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _fields(cls, prefix: str = "", path: tuple = ()):
    """(option name, attribute path, field, annotation, positional?, former names) of every
    field, nested dataclasses flattened as ``--group.field`` (a field declared with
    ``tyro.conf.arg(prefix_name=False)`` keeps its own name: ``--data-dir``)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        is_positional = _POSITIONAL in _markers(hint)
        inner, _ = unwrap_optional(hint)
        arg = next((m for m in _markers(hint) if isinstance(m, _ARG)), tyro.conf.arg())
        name = arg.name or f.name
        if dataclasses.is_dataclass(inner):
            yield from _fields(inner, f"{prefix}{name}.", path + (f.name,))
        else:
            own = prefix if arg.prefix_name is not False else ""
            yield ((own + name).replace("_", "-"), path + (f.name,), f, hint, is_positional,
                   tuple(arg.aliases or ()))


def _options(cls) -> dict[str, _Option]:
    """Every spelling of every option (former names too) -> the option."""
    table = {}
    for name, _, f, hint, is_positional, former in _fields(cls):
        if is_positional:
            continue
        inner, _ = unwrap_optional(hint)
        if inner is bool:
            option = _Option(f"--{name}", hint, "flag")
            for spelling in (f"--{name}", *former):
                table[spelling] = table[_negated(spelling)] = option
        else:
            repeated = tyro.conf.UseAppendAction in _markers(hint)  # one value per --x
            values = typing.get_origin(inner) in (list, tuple) and not repeated
            option = _Option(f"--{name}", hint, "values" if values else "value", _required(f))
            table.update(dict.fromkeys((f"--{name}", *former), option))
    return table


def _positionals(cls) -> list[tuple[str, Any, bool]]:
    """(NAME, annotation, required?) of the positional arguments, in order."""
    return [(next((m.metavar for m in _markers(hint) if isinstance(m, _ARG) and m.metavar),
                  name.upper()), hint, _required(f))
            for name, _, f, hint, is_positional, _ in _fields(cls) if is_positional]


def _reads(annotation, values: list[str]) -> bool:
    """Whether tyro reads ``values`` as ``annotation`` (the check :func:`explain` makes)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    one = dataclasses.make_dataclass("One", [("value", annotation)])
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            tyro.cli(one, args=["--value", *values], console_outputs=False, registry=REGISTRY)
    except SystemExit:
        return False
    return True


def explain(cls, argv: list[str], prog: str) -> Optional[str]:
    """Why tyro refused ``argv`` for ``cls``, as one complete sentence (the option, the value
    given, what is allowed), or None if none of the checks here finds the reason."""
    table, positionals, given, i = _options(cls), _positionals(cls), 0, 0
    named = set()
    while i < len(argv):
        token, i = argv[i], i + 1
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            option = table.get(name.replace("_", "-"))
            if option is None:
                return unknown_option(name, list(table), prog)
            named.add(option.name)
            if option.kind == "flag":
                continue
            values = [value] if eq else []
            while (not eq and i < len(argv) and not argv[i].startswith("--")
                   and (option.kind == "values" or not values)):
                values, i = values + [argv[i]], i + 1
            if not values:
                return f"{option.name} needs a value: {type_words(option.annotation)}"
            if not _reads(option.annotation, values):
                return (f"{option.name} must be {type_words(option.annotation)}; got "
                        f"{' '.join(values)!r}")
        else:
            if given >= len(positionals):
                return f"unexpected argument {token!r} ({prog} --help lists the arguments)"
            name, annotation, _ = positionals[given]
            given += 1
            if not _reads(annotation, [token]):
                return f"{name} must be {type_words(annotation)}; got {token!r}"
    missing = ([name for name, _, required in positionals[given:] if required]
               + [o.name for o in table.values() if o.required and o.name not in named])
    if missing:
        return f"{prog} needs {', '.join(missing)} ({prog} --help)"
    return None


def unknown_option(name: str, known: list[str], prog: str) -> str:
    """An unknown option, with the known one of the same last word or the nearest one."""
    leaf = name.lstrip("-").replace("_", "-").split(".")[-1]
    close = ([k for k in known if k.split(".")[-1].lstrip("-") == leaf][:1]
             or difflib.get_close_matches(name.replace("_", "-"), known, n=1, cutoff=0.75))
    return f"unknown option {name}" + (f"; did you mean {close[0]}?" if close
                                       else f" ({prog} --help lists them)")


def current_spellings(cls, argv: list[str]) -> list[str]:
    """``argv`` with the spellings a release ago read as today's, each with a one-line notice:
    an option's former name (declared beside it, ``tyro.conf.arg(aliases=...)``, and read by
    tyro), a flag given a value (``--progress false`` is ``--no-progress``) and YAML's null
    for None."""
    table, out, i = _options(cls), [], 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            option = table.get(name.replace("_", "-"))
            if option is not None and name.replace("_", "-") not in (
                    option.name, _negated(option.name)):
                warnings.warn(f"{name} is now {option.name}; the old name is read until the "
                              f"next release", FutureWarning)
            if (option is not None and option.kind == "value"
                    and unwrap_optional(option.annotation)[1]):
                if not eq and argv[i:i + 1] == ["null"]:
                    value, eq, i = "null", "=", i + 1
                if eq and value == "null":
                    warnings.warn(f"{name} null is now {name} None; the old spelling is read "
                                  f"until the next release", FutureWarning)
                    arg = f"{name}=None"
            if option is not None and option.kind == "flag":
                negated = name.replace("_", "-").rpartition(".")[2].lstrip("-").startswith("no-")
                if not eq and not negated and argv[i:i + 1] and argv[i].lower() in BOOL_WORDS:
                    value, eq, i = argv[i], "=", i + 1
                if eq and (negated or value.lower() not in BOOL_WORDS):
                    raise ConfigError(f"{option.name} is a flag and takes no value: give "
                                      f"{option.name} or {_negated(option.name)}")
                if eq:
                    flag = name if BOOL_WORDS[value.lower()] else _negated(name)
                    warnings.warn(f"{name} {value} is now {flag}; the old spelling is read "
                                  f"until the next release", FutureWarning)
                    arg = flag
        out.append(arg)
    return out


def _negated(flag: str) -> str:
    """``--group.x`` -> ``--group.no-x``."""
    head, dot, leaf = flag[2:].rpartition(".")
    return f"--{head}{dot}no-{leaf}"


def parse(cls, argv: list[str], prog: str, default: Any = None,
          description: Optional[str] = None, check: bool = True):
    """``argv`` read into the dataclass ``cls`` by tyro (``default``: an instance whose
    values are the defaults, such as a recipe's; ``description``: the help's, instead of the
    dataclass's docstring). Former spellings are read with a notice
    (:func:`current_spellings`); anything refused is one :class:`ConfigError` line
    (:func:`explain`), a value out of its range too (``check``: :func:`_check_option_ranges`;
    the config of ``train`` is checked by ``validate``, in the config's own names)."""
    kwargs = dict(prog=prog, registry=REGISTRY, description=description,
                  default=tyro.MISSING_NONPROP if default is None else default)
    if any(a in ("-h", "--help") for a in argv):
        tyro.cli(cls, args=["--help"], **kwargs)  # prints the help and exits 0
    argv = current_spellings(cls, list(argv))
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # tyro's own box, shown only if explain() fails
            args = tyro.cli(cls, args=argv, console_outputs=False, **kwargs)
    except SystemExit as exc:
        if not exc.code:
            raise
        reason = explain(cls, argv, prog)
        if reason is None:
            sys.stderr.write(said.getvalue())
            reason = f"the arguments could not be read (see above; {prog} --help lists them)"
        raise ConfigError(reason) from None
    if check:
        _check_option_ranges(args)
    return args


def _check_option_ranges(args) -> None:
    """Every :func:`~torchawp.config.ranges.bounded` field of ``args`` in its range, named as
    the command line spells it."""
    for name, path, f, hint, _, _ in _fields(type(args)):
        if "range" in f.metadata:
            f.metadata["range"].check(f"--{name}", functools.reduce(getattr, path, args),
                                      is_integer(hint), option=True)


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
