"""``torchawp train``: typed config fields from jsonargparse, recipes, resume, and parser
errors as one complete sentence."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Optional

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from ..config import TrainConfig
from ..recipes import (_NESTED, from_dict, load_config, load_recipe, read_yaml, recipe_path,
                       refuse_ignored_extra_data, to_dict, with_current_names)
from ..engine import train
from ..errors import ConfigError, TorchAWPError
from ..estimate import dry_run_plan
from ..methods import get_method
from ..runlog import describe, summary_table
from ..validation import validate
from .common import option_names


def _train_parser(defaults_recipe: Optional[str] = None):
    """jsonargparse over :class:`TrainConfig`; ``defaults_recipe`` makes ``--help`` show that
    recipe's values as the defaults (those that run when no ``--config`` is given)."""
    description = "Adversarial training with or without AWP. Every field below can be set on "\
                  "the command line or in a YAML recipe (--config)."
    if defaults_recipe:
        description += (f" The defaults shown are those of the shipped '{defaults_recipe}' "
                        "recipe, which runs when no --config is given on its dataset; with "
                        "--config the recipe fills the fields it names and the paper's CIFAR "
                        "protocol the others (torchawp train --config X --dry-run shows them).")
    parser = ArgumentParser(prog="torchawp train", exit_on_error=False, description=description)
    parser.add_argument("--config", action=ActionConfigFile,
                        help="YAML recipe: a path or the name of a shipped recipe "
                             "(torchawp list)")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the resolved config (what would run) and exit")
    parser.add_class_arguments(TrainConfig)
    if defaults_recipe:
        parser.set_defaults(_flatten(to_dict(load_recipe(defaults_recipe))))
    return parser


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("model_args", "method_args"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _option_value(argv: list[str], option: str) -> Optional[str]:
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


# jsonargparse names options after the config's fields (--out_dir); either spelling is read
ALIASES = {"probe_flatness_every": "eval.flatness_every"}


# datasets whose runs start from a shipped CPU recipe when no --config is given
CPU_RECIPES = {"fashion-mnist": "fashion_mnist", "mnist": "mnist"}


def _default_recipe(argv: list[str]) -> Optional[str]:
    """With no --config, training on digits starts from the shipped ``digits`` recipe (the
    offline default job; ``digits_rst`` for RST, which hides most labels and pseudo-labels
    those images), on Fashion-MNIST and MNIST from ``fashion_mnist`` and ``mnist`` (about 10
    minutes on 2 cores); other datasets start from the TrainConfig defaults, the paper's
    CIFAR protocol."""
    if _option_value(argv, "--config") is not None:
        return None
    name = _option_value(argv, "--data.name")
    if name in (None, "digits"):  # a method that needs extra data hides most labels for it
        try:
            extra = get_method(_option_value(argv, "--method") or "at")[0].needs_extra_data
        except ConfigError:  # an unknown method: validation names it
            extra = False
        return "digits_rst" if extra else "digits"
    return CPU_RECIPES.get(name)


def _resolve_recipes(argv: list[str]) -> list[str]:
    """Recipe names to paths (checked with torchawp's own YAML reader, whose errors name the
    file, line, column and key), and the default recipe prepended."""
    out = list(argv)
    default = _default_recipe(out)
    if default is not None:
        out = ["--config", default] + out
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = str(recipe_path(out[i + 1]))
            load_config(out[i + 1])
            out[i + 1] = _current_names(out[i + 1])
        elif arg.startswith("--config="):
            path = str(recipe_path(arg.split("=", 1)[1]))
            load_config(path)
            out[i] = "--config=" + _current_names(path)
    return out


def _current_names(path: str) -> str:
    """A config file for jsonargparse: its path, or, when it uses an old field name (read with
    a notice by :func:`load_config` or the trainer), its content under the current names."""
    data = read_yaml(path)
    refuse_ignored_extra_data(data, path)
    renamed = with_current_names(data)
    return path if renamed is None else yaml.safe_dump(renamed, sort_keys=False)


def _split_resume(argv: list[str]) -> tuple[list[str], bool, Optional[str]]:
    """Take ``--resume`` out of ``argv``: bare, with true/false, or with the run directory to
    continue. Returns (the other arguments, resume?, run directory or None)."""
    rest, resume, run_dir = [], False, None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--resume" or arg.startswith("--resume="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            else:
                value = "true"
            if value.lower() in ("true", "yes", "1", "false", "no", "0"):
                resume = value.lower() in ("true", "yes", "1")
            else:
                resume, run_dir = True, value
        else:
            rest.append(arg)
        i += 1
    return rest, resume, run_dir


def _resume_arguments(argv: list[str], run_dir: Optional[str]) -> list[str]:
    """Arguments that continue a run: its own config.yaml, then the user's overrides (which
    the trainer checks: only a longer ``--epochs`` may change a resumed run)."""
    out_dir = _option_value(argv, "--out_dir")
    if run_dir and out_dir and Path(run_dir) != Path(out_dir):
        raise ConfigError(f"--resume {run_dir} and --out-dir {out_dir} name different runs; "
                          f"give the run to continue once: torchawp train --resume RUN_DIR")
    run_dir = run_dir or out_dir
    if run_dir is None:
        raise ConfigError("--resume needs the run to continue; pass its directory: "
                          "torchawp train --resume RUN_DIR")
    if _option_value(argv, "--config") is not None:
        raise ConfigError("--resume continues a run with its own config.yaml, so --config "
                          "cannot be given too; drop --config")
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume: {run_dir} holds no torchawp run (no config.yaml); check "
                          f"the path, or drop --resume to start a new run there")
    return (["--config", _current_names(str(saved))] + argv
            + ["--out_dir", str(run_dir), "--resume", "true"])


_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false",
               "str": "a string", "list[int]": "a list of integers such as [100, 150]",
               "dict[str, Any]": "a mapping such as {width: 16}"}


def _field_type(key: str) -> str:
    """What a config field accepts, in words (from the dataclass annotation)."""
    cls, parts = TrainConfig, key.split(".")
    for part in parts[:-1]:
        cls = _NESTED.get((cls, part))
        if cls is None:
            return "a valid value"
    field = next((f for f in dataclasses.fields(cls) if f.name == parts[-1]), None)
    if field is None:
        return "a valid value"
    text = str(field.type)
    optional = text.startswith("Optional[")
    inner = text[len("Optional["):-1] if optional else text
    words = _TYPE_WORDS.get(inner, inner)
    return words + (" or null (unset)" if optional else "")


def _yaml_value(path: str, key: str):
    node = read_yaml(path) if "\n" not in path else yaml.safe_load(path)  # a file, or its text
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _parser_error(exc: Exception, parser, argv: list[str]) -> str:
    """jsonargparse's message as one complete sentence: the option or field, the value given
    and where, and what is allowed."""
    text = str(exc)
    unknown = re.search(r"unrecognized arguments: (\S+)", text)
    if unknown:
        return _unknown_option(unknown.group(1), parser)
    key = re.search(r'Parser key "([^"]+)"', text)
    if key:
        key = key.group(1)
        given = _option_value(argv, f"--{key}")
        if given is not None:
            where = "on the command line"
        else:  # from a config file: the last one that sets it wins
            given, where = None, "in the config"
            for i, arg in enumerate(argv):
                if arg == "--config" and i + 1 < len(argv):
                    value = _yaml_value(argv[i + 1], key)
                    if value is not None:
                        given, where = value, f"in {argv[i + 1]}"
        return f"{key} must be {_field_type(key)}; got {given!r} {where}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"the arguments could not be read ({first}); see torchawp train --help"


def _unknown_option(option: str, parser) -> str:
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    leaf = option.lstrip("-").split("=")[0].split(".")[-1]
    same_leaf = [o for o in options if o.split(".")[-1] == leaf]
    hint = same_leaf[:1] or difflib.get_close_matches(option.split("=")[0], options, n=1)
    return (f"unknown option {option}"
            + (f"; did you mean {hint[0].replace('_', '-')}?" if hint
               else "; see torchawp train --help"))


def cmd_train(argv: list[str]) -> int:
    argv, resume, run_dir = _split_resume(option_names(argv, "_", ALIASES))
    if any(a in ("-h", "--help") for a in argv):
        _train_parser(_default_recipe(argv)).parse_args(["--help"])
    args = _resume_arguments(argv, run_dir) if resume else _resolve_recipes(argv)
    parser = _train_parser()
    try:
        ns = parser.parse_args(args)
    except TorchAWPError:
        raise
    except Exception as exc:  # jsonargparse raises a few types on bad values
        raise ConfigError(_parser_error(exc, parser, args)) from None
    values = ns.as_dict()
    dry_run = values.pop("dry_run", False)
    values.pop("config", None)
    values.pop("__path__", None)
    cfg = validate(from_dict(values))
    if dry_run:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        print(f"# {dry_run_plan(cfg)}")
        return 0
    result = train(cfg)
    _leave_process_group()  # on success only: a failed rank exits and torchrun stops the rest
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"\n{describe(cfg)}; PGD-{cfg.eval.steps} (eval mode); run: {result.run_dir}")
        print(summary_table(result))
    return 0


def _leave_process_group() -> None:
    """Under torchrun: wait for every rank, then close the process group cleanly."""
    import torch.distributed as dist  # only after a run, which has loaded torch already

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
