"""YAML recipes: the shipped ones (``torchawp/configs/*.yaml``, also ``configs/``) and any file,
read into a :class:`~torchawp.config.TrainConfig` with errors that name the file, line, column
and key; configs to and from plain data (``config.yaml``), old field names read with a notice."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from typeguard import TypeCheckError, check_type

from . import (AttackConfig, AWPConfig, ConsistencyConfig, DataConfig, EvalConfig,
               OptimConfig, PerturbationConfig, TrainConfig)
from ..errors import ConfigError
from ..methods import get_method

RECIPE_DIR = Path(__file__).parents[1] / "configs"


def recipe_path(name_or_path: str) -> Path:
    """Resolve ``--config``: a YAML path, or the name of a recipe shipped in the package."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (RECIPE_DIR / path.name, RECIPE_DIR / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    hint = difflib.get_close_matches(path.stem, names, n=1)
    did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(
        f"config {name_or_path!r} is neither a file nor a shipped recipe{did_you_mean} "
        f"(recipes: torchawp list)"
    )


def load_recipe(name: str = "digits") -> TrainConfig:
    """A shipped recipe by name (``torchawp list`` shows them); ``digits`` is the offline
    default job."""
    return load_config(recipe_path(name))


# datasets whose runs start from a shipped CPU recipe when no recipe is named
CPU_RECIPES = {"fashion-mnist": "fashion_mnist", "mnist": "mnist"}


def starting_recipe(dataset: str, method: str) -> Optional[str]:
    """The shipped recipe ``torchawp train`` starts from when no ``--config`` is given:
    ``digits`` on digits (the offline default job; ``digits_rst`` for a method that needs
    extra data, which hides most labels and pseudo-labels those images), ``fashion_mnist`` and
    ``mnist`` on those datasets (about 10 minutes on 2 cores); None for any other dataset,
    which starts from the TrainConfig defaults, the paper's CIFAR protocol."""
    if dataset == "digits":
        try:
            extra = get_method(method)[0].needs_extra_data
        except ConfigError:  # an unknown method: validation names it
            extra = False
        return "digits_rst" if extra else "digits"
    return CPU_RECIPES.get(dataset)


def read_yaml(path: str | Path) -> dict:
    """A YAML file as plain data; a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{place}: not valid YAML ({exc.problem or exc.context}); fix "
                          f"the file there") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path} ({exc.strerror})") from None


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML recipe into a :class:`TrainConfig` (not yet validated)."""
    return from_dict(read_yaml(path), source=str(path))


def merged_recipes(names: list[str]) -> TrainConfig:
    """Recipes (names or paths) merged in order, group by group: a later one's fields win.
    Each is checked on its own first, so an error names its file."""
    merged: dict[str, Any] = {}
    groups = {key for _, key in _NESTED}  # data, attack, ...: merged; model_args: replaced
    for name in names:
        path = recipe_path(name)
        data = read_yaml(path)
        from_dict(data, source=str(path))
        for key, value in data.items():
            both = isinstance(value, dict) and isinstance(merged.get(key), dict)
            merged[key] = {**merged[key], **value} if both and key in groups else value
    return from_dict(merged, source=" + ".join(names))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain data (what ``config.yaml`` in a run directory holds)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any], cls=TrainConfig, source: str = "the config",
              prefix: str = ""):
    """Build a (nested) config dataclass from plain data, rejecting unknown keys (the error
    names ``source``, the key's full name and the closest known key)."""
    where = f"{prefix.rstrip('.') or 'the top level'} of {source}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of fields (got {type(data).__name__})")
    if cls is TrainConfig:
        refuse_ignored_extra_data(data, source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        new = RENAMED.get(f"{prefix}{key}")
        if new is not None:  # an old spelling: accepted for one release, with a notice
            warnings.warn(f"{prefix}{key} is now {new}; the old name is read until torchawp "
                          f"0.4 (in {source})", FutureWarning, stacklevel=2)
            key = new.rsplit(".", 1)[-1]
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            fix = (f"did you mean {hint[0]!r}?" if hint else
                   f"the known keys there are {', '.join(fields)}")
            raise ConfigError(f"unknown key {prefix}{key} in {source}; {fix}")
        sub = _NESTED.get((cls, key))
        if sub is None:
            annotation = typing.get_type_hints(cls)[key]
            value = _number(value, annotation)
            try:
                check_type(value, annotation)
            except TypeCheckError:
                raise ConfigError(f"{prefix}{key} must be {type_words(annotation, 'null')}; got "
                                  f"{value!r} in {source}") from None
        kwargs[key] = (from_dict(value, sub, source, f"{prefix}{key}.") if sub is not None
                       else value)
    return cls(**kwargs)


def _number(value, annotation):
    """``5e-3`` for a number field: YAML 1.1 reads a float in exponent notation without a dot
    as a string; the command line reads it as a number, and so does a recipe."""
    if (isinstance(value, str) and float in (annotation, *typing.get_args(annotation))
            and re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value)):
        return float(value)
    return value


def unwrap_optional(annotation) -> tuple[Any, bool]:
    """The type without ``Annotated`` and ``Optional``, and whether None is allowed."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True
    return annotation, False


def type_words(annotation, none: str = "None") -> str:
    """What a field of this type accepts, in words: ``Optional[int]`` is "an integer or
    None" (``none``: how None is spelled, ``null`` in YAML)."""
    annotation, optional = unwrap_optional(annotation)
    if optional:
        return type_words(annotation) + f" or {none}"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple and args and ... not in args:
        return f"{len(args)} values, each {type_words(args[0])}"
    if origin in (list, tuple):
        return f"a list of values, each {type_words(args[0]) if args else 'a value'}"
    return {int: "an integer", float: "a number", str: "text", bool: "true or false",
            dict: "a mapping such as {width: 16}"}.get(origin or annotation, "a valid value")


def refuse_ignored_extra_data(data: dict, source: str) -> None:
    """A config written before extra data served every method (it still says
    ``unlabeled_fraction``) with ``data.extra_data`` under a method other than RST: that run
    ignored its extra data, and reading it now would mix the data in, a different experiment."""
    old = data.get("data") if isinstance(data.get("data"), dict) else {}
    method = str(data.get("method", ""))
    if "unlabeled_fraction" in old and old.get("extra_data") and not method.startswith("rst"):
        raise ConfigError(f"{source} sets data.extra_data for method {method}, which torchawp "
                          f"0.2 ignored (RST alone used it) and which every method now mixes "
                          f"into its batches; to continue that run as it was, remove "
                          f"data.extra_data there, or start a new run to use the extra data")


# old field name -> new name; read with a one-line notice for one release
RENAMED = {"data.unlabeled_fraction": "data.extra_fraction"}


def with_current_names(data: dict) -> Optional[dict]:
    """``data`` (a config as plain data) with every old field name (:data:`RENAMED`) replaced
    by the current one; None when it uses none."""
    out, changed = dict(data), False
    for old, new in RENAMED.items():
        group, key = old.split(".")
        section = out.get(group)
        if isinstance(section, dict) and key in section:
            out[group] = {(new.split(".")[1] if k == key else k): v for k, v in section.items()}
            changed = True
    return out if changed else None

_NESTED = {
    (TrainConfig, "data"): DataConfig,
    (TrainConfig, "attack"): AttackConfig,
    (TrainConfig, "awp"): AWPConfig,
    (TrainConfig, "perturbation"): PerturbationConfig,
    (TrainConfig, "consistency"): ConsistencyConfig,
    (TrainConfig, "optim"): OptimConfig,
    (TrainConfig, "eval"): EvalConfig,
}
