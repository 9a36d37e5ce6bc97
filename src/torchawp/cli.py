"""torchawp: adversarial training with Adversarial Weight Perturbation (AWP; Wu, Xia & Wang,
NeurIPS 2020), and the evaluations the field reports.

usage: torchawp COMMAND [options]      (torchawp COMMAND --help for a command's options)

commands:
  train          train AT, TRADES, MART or RST, each with or without AWP; with no options,
                 AT-AWP on the offline digits dataset (about a minute on 2 CPU cores)
  eval           robustness of a run's best and last checkpoints: clean, FGSM, PGD-20/100,
                 CW, AutoAttack, per-example worst case, robust generalization gap, checks
  landscape      robust weight loss landscapes along filter-normalised directions
  flatness       average- and worst-case flatness of the robust loss (Stutz et al.)
  pseudo-label   label unlabelled images with a standard model, for RST
  list           methods, models, datasets, attacks and shipped recipes

examples:
  torchawp train                                      # the default job
  torchawp train --method trades-awp --epochs 40      # another method, same recipe
  torchawp train --config cifar10_prn18_at_awp --data.data_dir ~/data
  torchawp train --resume runs/RUN                    # continue a stopped run
  torchawp eval runs/RUN --autoattack
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from .errors import ConfigError, TorchAWPError


def _train_parser(defaults_recipe: Optional[str] = None):
    """jsonargparse over :class:`TrainConfig`; ``defaults_recipe`` makes ``--help`` show that
    recipe's values as the defaults (those that run when no ``--config`` is given)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from .config import TrainConfig, load_recipe, to_dict

    description = "Adversarial training with or without AWP. Every field below can be set on "\
                  "the command line or in a YAML recipe (--config)."
    if defaults_recipe:
        description += (f" The defaults shown are those of the shipped '{defaults_recipe}' "
                        "recipe, which runs when no --config is given on digits; with "
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
        if isinstance(value, dict) and key != "model_args":
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


ALIASES = {"probe_flatness_every": "eval.flatness_every"}


def _normalise_options(argv: list[str]) -> list[str]:
    """``--out-dir`` and ``--out_dir`` are the same option (jsonargparse uses the field names);
    ``--probe-flatness-every`` is ``--eval.flatness_every``."""
    out = []
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            name = name.replace("-", "_")
            arg = "--" + ALIASES.get(name, name) + eq + value
        out.append(arg)
    return out


def _default_recipe(argv: list[str]) -> Optional[str]:
    """With no --config, training on digits starts from the shipped ``digits`` recipe (the
    offline default job; ``digits_rst`` for RST, which hides most labels and pseudo-labels
    those images); other datasets start from the TrainConfig defaults, the paper's CIFAR
    protocol."""
    if _option_value(argv, "--config") is None and _option_value(argv, "--data.name") in (
            None, "digits"):
        rst = (_option_value(argv, "--method") or "").startswith("rst")
        return "digits_rst" if rst else "digits"
    return None


def _resolve_recipes(argv: list[str]) -> list[str]:
    """Recipe names to paths (checked with torchawp's own YAML reader, whose errors name the
    file, line, column and key), and the default recipe prepended."""
    from .config import load_config, recipe_path

    out = list(argv)
    default = _default_recipe(out)
    if default is not None:
        out = ["--config", default] + out
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = str(recipe_path(out[i + 1]))
            load_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + str(recipe_path(arg.split("=", 1)[1]))
            load_config(out[i].split("=", 1)[1])
    return out


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
    return ["--config", str(saved)] + argv + ["--out_dir", str(run_dir), "--resume", "true"]


_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false",
               "str": "a string", "list[int]": "a list of integers such as [100, 150]",
               "dict[str, Any]": "a mapping such as {width: 16}"}


def _field_type(key: str) -> str:
    """What a config field accepts, in words (from the dataclass annotation)."""
    import dataclasses

    from .config import _NESTED, TrainConfig

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
    from .config import read_yaml

    node = read_yaml(path)
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
            + (f"; did you mean {hint[0]}?" if hint else "; see torchawp train --help"))


def cmd_train(argv: list[str]) -> int:
    import yaml

    from .config import from_dict, to_dict, validate
    from .engine import train
    from .train import describe, summary_table

    argv, resume, run_dir = _split_resume(_normalise_options(argv))
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
        return 0
    result = train(cfg)
    _leave_process_group()  # on success only: a failed rank exits and torchrun stops the rest
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"\n{describe(cfg)}; PGD-{cfg.eval.steps} (eval mode); run: {result.run_dir}")
        print(summary_table(result))
    return 0


def _leave_process_group() -> None:
    """Under torchrun: wait for every rank, then close the process group cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def cmd_eval(argv: list[str]) -> int:
    from pathlib import Path

    from .attacks import autoattack_available
    from .checkpoint import resolve_checkpoint, same_weights
    from .evaluate import (DEFAULT_ATTACKS, EVAL_SEED, evaluate_checkpoint, format_table,
                           write_report)
    from .rundir import exclusive_lock

    parser = argparse.ArgumentParser(
        prog="torchawp eval", description="Robustness of a checkpoint: clean, FGSM, PGD-20/100, "
        "CW-inf, AutoAttack, per-example worst case, gap and gradient-masking checks.")
    parser.add_argument("path", help="run directory (best and last) or .safetensors checkpoint")
    parser.add_argument("--which", choices=["best", "last", "both"], default="both",
                        help="for a run directory: which checkpoint(s) (default both)")
    parser.add_argument("--attacks", nargs="+", default=None,
                        help="fgsm, pgdK, cwK, autoattack (default: fgsm pgd20 pgd100 cw20)")
    parser.add_argument("--autoattack", action="store_true",
                        help="add standard AutoAttack (needs the autoattack extra; slow on CPU)")
    parser.add_argument("--n-examples", type=int, default=None, help="first N test images")
    parser.add_argument("--restarts", type=int, default=1, help="PGD/CW random restarts")
    parser.add_argument("--eps", type=float, default=None, help="default: the training eps")
    parser.add_argument("--norm", choices=["linf", "l2"], default=None)
    parser.add_argument("--seed", type=int, default=EVAL_SEED,
                        help=f"seed of the attacks' random starts (default {EVAL_SEED}, as in "
                             f"training's per-epoch evaluation)")
    parser.add_argument("--no-checks", action="store_true", help="skip the sanity checks")
    parser.add_argument("--out", default=None,
                        help="where eval.json / eval.md go (default: the run directory, or "
                             "beside the checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = _parse(parser, argv)
    attacks = list(args.attacks or DEFAULT_ATTACKS)
    if args.autoattack and "autoattack" not in attacks:
        attacks.append("autoattack")
    if "autoattack" in attacks and not autoattack_available():
        raise ConfigError("AutoAttack needs the optional extra: pip install "
                          "'torchawp[autoattack]' (the pyautoattack package)")
    path = Path(args.path)
    whiches = ["best", "last"] if args.which == "both" else [args.which]
    if not path.is_dir():
        whiches = whiches[:1]
    out_dir = Path(args.out) if args.out else (path if path.is_dir() else path.parent)
    files = [resolve_checkpoint(path, w) for w in whiches]
    same = len(files) == 2 and same_weights(*files)  # the last epoch was the best
    evaluated = whiches[:1] if same else whiches
    with exclusive_lock(out_dir / "eval_state", "evaluation state"):
        results = [evaluate_checkpoint(
            path, which, attacks, args.n_examples, args.device, args.data_dir,
            restarts=args.restarts, eps=args.eps, norm=args.norm, seed=args.seed,
            checks=not args.no_checks, state_dir=out_dir / "eval_state" / which, log=_log)
            for which in evaluated]
        if same:  # one evaluation serves both rows
            results.append(dict(results[0], which="last", checkpoint=str(files[1])))
        json_path, md_path = write_report(results, out_dir)
    first = results[0]
    tm = first["threat_model"]
    print(f"{args.path}: {first['dataset']} test set, {first['n']} images, {tm['norm']} eps "
          f"{tm['eps']:.4g}" + ("" if "autoattack" in attacks else
                                "; AutoAttack not run (add --autoattack)"))
    print(format_table(results))
    if same:
        print("best and last are the same weights: evaluated once")
    for r in results[:len(evaluated)]:
        for c in r["checks"]:
            print(f"  [{c['status']:>7}] {r['which']} {c['name']}: {c['detail']}")
    print(f"report: {md_path}, {json_path}")
    return 0


def _log(text: str) -> None:
    """Progress of the long commands, on stderr (the results go to stdout)."""
    print(f"torchawp: {text}", file=sys.stderr, flush=True)


def cmd_pseudo_label(argv: list[str]) -> int:
    from .pseudo_label import pseudo_label_file

    parser = argparse.ArgumentParser(
        prog="torchawp pseudo-label",
        description="Label unlabelled images with a trained (standard) model, for RST.")
    parser.add_argument("checkpoint", help="run directory or .safetensors checkpoint")
    parser.add_argument("--out", required=True, help="extra-data .npz to write")
    parser.add_argument("--images", default=None,
                        help=".npz with an 'images' array (default: the training images the "
                             "checkpoint's run left out with data.train_subset)")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="keep only predictions at least this confident")
    parser.add_argument("--device", default="auto")
    args = _parse(parser, argv)
    r = pseudo_label_file(args.checkpoint, args.out, args.images, args.min_confidence,
                          args.device)
    line = f"labelled {r['labelled']} of {r['total']} images -> {r['out']}"
    if "agreement" in r:
        line += f"; agreement with the hidden true labels {100 * r['agreement']:.1f}%"
    print(line)
    return 0


def _checkpoints(paths: list[str], which: str) -> list[tuple[str, str, str]]:
    """``(label, path, which)`` for every run directory / checkpoint and requested checkpoint."""
    from pathlib import Path

    out = []
    for path in paths:
        p = Path(path)
        whiches = ["best", "last"] if which == "both" and p.is_dir() else (
            [which if which != "both" else "best"])
        name = p.name if p.is_dir() else p.stem
        out += [(f"{name}:{w}" if p.is_dir() else name, path, w) for w in whiches]
    return out


def _weight_space_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("paths", nargs="+", help="run directories or .safetensors checkpoints")
    parser.add_argument("--which", choices=["best", "last", "both"], default="best")
    parser.add_argument("--split", choices=["test", "train", "both"], default="test")
    parser.add_argument("--steps", type=int, default=10,
                        help="PGD steps of the robust loss, re-run at every point (0: clean loss)")
    parser.add_argument("--seed", type=int, default=0,
                        help="same seed = same random directions/samples for every model")
    parser.add_argument("--out", default=".", help="folder for the PNG/CSV/JSON outputs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    return parser


def _robust_attack(tm: dict, steps: int):
    from .attacks import PGD

    return PGD(tm["norm"], tm["eps"], tm["step_size"], steps) if steps > 0 else None


def cmd_landscape(argv: list[str]) -> int:
    import csv
    from pathlib import Path

    from .evaluate import load_for_eval
    from .landscape import landscape_1d, landscape_2d, plot_landscape_2d, plot_landscapes_1d

    parser = _weight_space_parser("torchawp landscape", "Robust weight loss landscapes along "
                                  "filter-normalised random directions (Li et al. 2018).")
    parser.add_argument("--n-examples", type=int, default=500)
    parser.add_argument("--directions", type=int, default=3)
    parser.add_argument("--points", type=int, default=21)
    parser.add_argument("--radius", type=float, default=1.0)
    parser.add_argument("--two-d", action="store_true", help="also a 2-D contour per model")
    args = _parse(parser, argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits_wanted = ["train", "test"] if args.split == "both" else [args.split]
    curves = {s: [] for s in splits_wanted}
    rows = []
    for label, path, which in _checkpoints(args.paths, args.which):
        model, splits, tm = load_for_eval(path, which, args.device, args.data_dir)
        attack = _robust_attack(tm, args.steps)
        for split in splits_wanted:
            x, y = getattr(splits, split).tensors(0, args.n_examples)
            _log(f"landscape of {label} on {len(y)} {split} images: {args.directions} "
                 f"directions x {args.points} points" + (" + 2-D" if args.two_d else ""))
            ls = landscape_1d(model, x, y, attack, args.directions, args.points, args.radius,
                              args.seed)
            curves[split].append((label, ls))
            rows += [(label, split, d, a, ls.loss[d][i], ls.acc[d][i])
                     for d in range(len(ls.loss)) for i, a in enumerate(ls.alphas)]
            if args.two_d:
                ls2 = landscape_2d(model, x, y, attack, max(5, args.points // 2), args.radius,
                                   args.seed)
                safe = label.replace(":", "_")
                plot_landscape_2d(f"{label} ({split})", ls2, out / f"landscape2d_{safe}_{split}.png")
    kind = f"PGD-{args.steps} robust loss" if args.steps else "clean loss"
    for split, items in curves.items():
        plot_landscapes_1d(items, out / f"landscape_{split}.png",
                           f"{kind}, {split}, {args.directions} directions, seed {args.seed}")
    with open(out / "landscape.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["checkpoint", "split", "direction", "a", "loss", "acc"])
        writer.writerows(rows)
    print(f"{kind} at a = -{args.radius:g}, 0, {args.radius:g} (mean over directions):")
    for split, items in curves.items():
        for label, ls in items:
            mean = [sum(ls.loss[d][i] for d in range(len(ls.loss))) / len(ls.loss)
                    for i in (0, len(ls.alphas) // 2, -1)]
            print(f"  {label:<28} {split:<5} " + "  ".join(f"{v:.3f}" for v in mean))
    print(f"wrote {', '.join(str(out / f'landscape_{s}.png') for s in curves)}, "
          f"{out / 'landscape.csv'}")
    return 0


def cmd_flatness(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from .evaluate import load_for_eval
    from .flatness import average_case_flatness, worst_case_flatness

    parser = _weight_space_parser("torchawp flatness", "Average- and worst-case flatness of the "
                                  "robust loss in relative weight balls (Stutz et al. 2021).")
    parser.set_defaults(steps=20)
    parser.add_argument("--kind", choices=["average", "worst", "both"], default="both")
    parser.add_argument("--n-examples", type=int, default=1000)
    parser.add_argument("--xi-average", type=float, default=0.5)
    parser.add_argument("--xi-worst", type=float, default=7.5e-4)
    parser.add_argument("--samples", type=int, default=10, help="average-case samples")
    parser.add_argument("--passes", type=int, default=20, help="worst-case passes")
    parser.add_argument("--restarts", type=int, default=10, help="worst-case restarts")
    args = _parse(parser, argv)
    results = []
    splits_wanted = ["train", "test"] if args.split == "both" else [args.split]
    for label, path, which in _checkpoints(args.paths, args.which):
        model, splits, tm = load_for_eval(path, which, args.device, args.data_dir)
        attack = _robust_attack(tm, args.steps)
        for split in splits_wanted:
            x, y = getattr(splits, split).tensors(0, args.n_examples)
            r = {"checkpoint": label, "split": split, "steps": args.steps, "seed": args.seed}
            _log(f"flatness of {label} on {len(y)} {split} images")
            if args.kind in ("average", "both"):
                avg = average_case_flatness(model, x, y, attack, args.xi_average, args.samples,
                                            args.seed)
                r.update(loss=avg["loss"], average=avg["flatness"], xi_average=args.xi_average)
            if args.kind in ("worst", "both"):
                worst = worst_case_flatness(model, x, y, attack, args.xi_worst, args.passes,
                                            args.restarts, seed=args.seed)
                r.update(loss=worst["loss"], worst=worst["flatness"], xi_worst=args.xi_worst)
            results.append(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flatness.json").write_text(json.dumps(results, indent=2))
    kind = f"PGD-{args.steps} robust loss" if args.steps else "clean loss"
    print(f"flatness of the {kind} (increase under weight perturbation; lower is flatter)")
    width = max(len("checkpoint"), *(len(r["checkpoint"]) for r in results)) + 2
    print(f"{'checkpoint':<{width}}{'split':<7}{'loss':>8}{'average':>10}{'worst':>10}")
    for r in results:
        fmt = lambda k: f"{r[k]:.4f}" if k in r else "-"  # noqa: E731
        print(f"{r['checkpoint']:<{width}}{r['split']:<7}{r['loss']:>8.4f}{fmt('average'):>10}"
              f"{fmt('worst'):>10}")
    print(f"wrote {out / 'flatness.json'}")
    return 0


def cmd_list(argv: list[str]) -> int:
    from .attacks import ATTACKS
    from .config import RECIPE_DIR
    from .data import DATASETS
    from .methods import METHODS, method_names
    from .models import MODELS

    _parse(argparse.ArgumentParser(prog="torchawp list"), argv)
    print("methods:  " + ", ".join(method_names()))
    print("  (AWP gamma / warm-up: the method's default, used when the config leaves awp.gamma "
          "/ awp.warmup_epochs unset;\n   the digits recipes set 0.01 / 10 for every method, "
          "the paper recipes the authors' values)")
    for spec in METHODS.values():
        awp = (f"AWP gamma {spec.awp_gamma} warm-up {spec.awp_warmup}"
               if spec.attack_loss != "none" else "no attack")
        print(f"  {spec.name:<8} attack loss {spec.attack_loss}, BN {spec.bn_mode} while "
              f"crafting, {awp}; {spec.paper}")
    print("models:   " + ", ".join(sorted(MODELS)))
    print("datasets: " + ", ".join(sorted(DATASETS)))
    print("attacks:  " + ", ".join(sorted(ATTACKS)) + " (eval names: fgsm, pgdK, cwK)")
    print("recipes:  " + ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))))
    return 0


def _parse(parser: argparse.ArgumentParser, argv):
    parser.exit_on_error = False
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from None


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "landscape": cmd_landscape,
            "flatness": cmd_flatness, "pseudo-label": cmd_pseudo_label, "list": cmd_list}


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"torchawp: warning: {message}", file=file or sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__
        print(f"torchawp {__version__}")
        return 0
    warnings.showwarning = _one_line_warning  # a notice is one line, like an error
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        hint = difflib.get_close_matches(command, list(COMMANDS), n=1)
        print(f"torchawp: error: unknown command {command!r}"
              + (f"; did you mean {hint[0]!r}?" if hint else f" ({', '.join(COMMANDS)})"),
              file=sys.stderr)
        return 2
    try:
        return COMMANDS[command](rest)
    except TorchAWPError as exc:
        code = getattr(exc, "exit_code", 2)
        print(f"torchawp: {'stopped' if code == 130 else 'error'}: {exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("torchawp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
