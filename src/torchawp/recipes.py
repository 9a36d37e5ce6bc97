"""YAML recipes: the shipped ones (``torchawp/configs/*.yaml``, also ``configs/``) and any file,
read into a :class:`~torchawp.config.TrainConfig` with errors that name the file, line, column
and key."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from .config import TrainConfig, from_dict
from .errors import ConfigError

RECIPE_DIR = Path(__file__).parent / "configs"


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
