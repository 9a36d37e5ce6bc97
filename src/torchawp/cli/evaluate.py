"""``torchawp eval`` (the checkpoint suite) and ``torchawp pseudo-label``."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..attacks import Threat, attack_names, autoattack_available, check_attack_names
from ..backdoor import Trigger
from ..checkpoint import CHECKPOINTS, resolve_checkpoint, same_weights
from ..data import load_splits
from ..errors import ConfigError
from ..evaluate import EVAL_SEED
from ..pseudo_label import pseudo_label_file
from ..report import cascade_line, format_table, write_report
from ..robustbench import checkpoint_path, load_robustbench
from ..rundir import exclusive_lock
from ..runtime import resolve_device
from ..suite import DEFAULT_ATTACKS, evaluate_checkpoint, evaluate_model, load_foreign
from .common import integer, log, number, option, parse


def cmd_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp eval", description="Robustness of a checkpoint: clean, FGSM, PGD-20/100, "
        "CW-inf, AutoAttack, per-example worst case, gap and gradient-masking checks.")
    parser.add_argument("path", nargs="?", default=None,
                        help="run directory (best and last) or .safetensors checkpoint")
    parser.add_argument("--which", choices=["all", "both", "best", "last", "ema", "ema_best",
                                            "ema_last"], default="all",
                        help="for a run directory: which checkpoint(s); all (default): best, "
                             "last and, with a weight average (--ema), ema_best and ema_last; "
                             "both: best and last; ema: ema_best and ema_last")
    parser.add_argument("--attacks", nargs="+", default=None,
                        help=f"{attack_names()} (K: steps; default: "
                             f"{' '.join(DEFAULT_ATTACKS)}; torchawp list explains each)")
    parser.add_argument("--autoattack", action="store_true",
                        help="add AutoAttack (needs the autoattack extra; slow on CPU)")
    parser.add_argument("--autoattack-version", choices=["standard", "plus", "rand"],
                        default="standard", help="with --autoattack: standard (the "
                        "leaderboards'), plus, or rand (for randomised defences)")
    parser.add_argument("--n-examples", type=integer(1), default=None,
                        help="first N test images")
    parser.add_argument("--restarts", type=integer(1), default=1, help="PGD/CW random restarts")
    parser.add_argument("--eps", type=number(), default=None, help="default: the training eps")
    parser.add_argument("--norm", choices=["linf", "l2"], default=None)
    parser.add_argument("--seed", type=int, default=EVAL_SEED,
                        help=f"seed of the attacks' random starts (default {EVAL_SEED}, as in "
                             f"training's per-epoch evaluation)")
    parser.add_argument("--per-attack", action="store_true",
                        help="run every attack on every image and report each one's accuracy "
                             "(default: a cascade; PGD-20 and AutoAttack on every image, the "
                             "other attacks, cheapest first, only on the images still robust; "
                             "same worst case)")
    parser.add_argument("--no-checks", action="store_true", help="skip the sanity checks")
    option(parser, "--out-dir", former=("--out",), dest="out", default=None, metavar="DIR",
           help="where eval.json / eval.md go (default: the run directory, or beside the "
                "checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--trigger", default=None,
                        help="with --target: also the success rate of this backdoor trigger "
                             "(patch:S or pixels:N[:SEED]; torchawp backdoor) on test images "
                             "of the other classes")
    parser.add_argument("--target", type=integer(0), default=None,
                        help="the trigger's target class")
    foreign = parser.add_argument_group(
        "a model torchawp never trained (instead of PATH)")
    foreign.add_argument("--model", default=None,
                         help="module.path:factory returning the nn.Module (on PYTHONPATH)")
    foreign.add_argument("--model-args", default="{}",
                         help="keyword arguments of the factory, as a YAML mapping")
    foreign.add_argument("--weights", default=None,
                         help="its state dict: .safetensors, or .pt (loaded weights_only)")
    foreign.add_argument("--data", default=None, help="dataset to evaluate on (torchawp list)")
    foreign.add_argument("--step-size", type=number(), default=None,
                         help="PGD step (default eps / 4)")
    foreign.add_argument("--normalize", nargs=2, metavar=("MEAN", "STD"), default=None,
                         help="the model expects normalised input: wrap it with these "
                              "per-channel values (comma lists) so attacks work in [0, 1]")
    zoo = parser.add_argument_group(
        "a RobustBench zoo entry, from its checkpoint on disk (instead of PATH)")
    zoo.add_argument("--robustbench", default=None, metavar="NAME",
                     help="e.g. Wu2020Adversarial (the AWP paper's TRADES-AWP WRN-34-10); read "
                          "from MODEL_DIR/DATASET/THREAT/NAME.pt, never downloaded")
    zoo.add_argument("--dataset", default="cifar10", help="its dataset (default cifar10)")
    zoo.add_argument("--threat-model", default="Linf", choices=["Linf", "L2"],
                     help="its leaderboard (default Linf: eps 8/255; L2: 0.5)")
    zoo.add_argument("--model-dir", default="models", help="RobustBench's model folder")
    args = parse(parser, argv)
    attacks = list(dict.fromkeys(args.attacks or DEFAULT_ATTACKS))  # each once, in order
    if args.autoattack:
        version = {"standard": "autoattack"}.get(args.autoattack_version,
                                                 f"autoattack-{args.autoattack_version}")
        attacks += [version] if version not in attacks else []
    check_attack_names(attacks)
    if any(a.startswith("autoattack") for a in attacks) and not autoattack_available():
        raise ConfigError("AutoAttack needs the optional extra: pip install "
                          "'torchawp[autoattack]' (the pyautoattack package)")
    args.backdoor = None
    if (args.trigger is None) != (args.target is None):
        raise ConfigError("--trigger and --target go together (e.g. --trigger patch:2 "
                          "--target 1)")
    if args.trigger is not None:
        args.backdoor = (Trigger.parse(args.trigger), args.target)
    if args.model is not None:
        return _eval_foreign(args, attacks)
    if args.robustbench is not None:
        return _eval_robustbench(args, attacks)
    if args.path is None:
        raise ConfigError("torchawp eval needs a run directory or checkpoint, or --model with "
                          "--weights, --data and --eps for a model torchawp did not train")
    path = Path(args.path)
    whiches = _whiches(path, args.which)
    out_dir = Path(args.out) if args.out else (path if path.is_dir() else path.parent)
    files = {w: resolve_checkpoint(path, w) for w in whiches}
    # a pair whose last epoch was its best holds the same weights: evaluated once
    same = {last: best for best, last in (("best", "last"), ("ema_best", "ema_last"))
            if best in files and last in files and same_weights(files[best], files[last])}
    evaluated = [w for w in whiches if w not in same]
    with exclusive_lock(out_dir / "eval_state", "evaluation state"):
        results = {which: evaluate_checkpoint(
            path, which, attacks, args.n_examples, args.device, args.data_dir,
            restarts=args.restarts, eps=args.eps, norm=args.norm, seed=args.seed,
            checks=not args.no_checks, state_dir=out_dir / "eval_state" / which, log=log,
            backdoor=args.backdoor, per_attack=args.per_attack)
            for which in evaluated}
        for last, best in same.items():  # one evaluation serves both rows
            results[last] = dict(results[best], which=last, checkpoint=str(files[last]))
        results = [results[w] for w in whiches]
        paths = write_report(results, out_dir)
    _print(args.path, results, attacks, paths, len(evaluated))
    for last, best in same.items():
        print(f"{best} and {last} are the same weights: evaluated once")
    return 0


def _whiches(path: Path, which: str) -> list[str]:
    """The checkpoints ``--which`` names in a run directory (a file is one checkpoint)."""
    if not path.is_dir():
        return [which if which in CHECKPOINTS else "best"]
    if which == "all":
        return [w for w in CHECKPOINTS if (path / f"{w}.safetensors").is_file()] or ["best"]
    return {"both": ["best", "last"], "ema": ["ema_best", "ema_last"]}.get(which, [which])


def _eval_foreign(args, attacks) -> int:
    """``torchawp eval --model module:factory --weights FILE --data NAME --eps E``."""
    missing = [o for o, v in (("--weights", args.weights), ("--data", args.data),
                              ("--eps", args.eps)) if v is None]
    if missing or args.path is not None:
        raise ConfigError("a model torchawp did not train is evaluated with --model, --weights, "
                          "--data and --eps (and no PATH); missing: "
                          + (", ".join(missing) or "nothing, but PATH was given too"))
    model_args = yaml.safe_load(args.model_args) or {}
    if not isinstance(model_args, dict):
        raise ConfigError(f"--model-args must be a mapping such as '{{width: 16}}' (got "
                          f"{args.model_args!r})")
    normalize = None
    if args.normalize is not None:
        try:
            normalize = tuple([float(v) for v in s.split(",")] for s in args.normalize)
        except ValueError:
            raise ConfigError(f"--normalize takes two comma lists of numbers, MEAN and STD "
                              f"(got {' '.join(args.normalize)})") from None
    threat = Threat(args.norm or "linf", args.eps,
                    args.step_size if args.step_size is not None else args.eps / 4)
    model, splits, threat = load_foreign(args.model, args.weights, args.data, threat,
                                         model_args, normalize, args.data_dir, args.device)
    out_dir = Path(args.out) if args.out else Path(args.weights).parent
    return _evaluate_one(args, attacks, model, splits, threat, args.weights, "model", out_dir)


def _eval_robustbench(args, attacks) -> int:
    """``torchawp eval --robustbench NAME``: the entry's threat model unless ``--eps`` /
    ``--norm`` say otherwise; the report names the entry and its file's SHA-256."""
    if args.path is not None:
        raise ConfigError("--robustbench names the model to evaluate; drop PATH")
    model, threat = load_robustbench(args.robustbench, args.dataset, args.threat_model,
                                     args.model_dir)
    if args.eps is not None:
        threat = threat.scaled(args.eps)
    if args.norm is not None:
        threat = Threat(args.norm, threat.eps, threat.step_size)
    model = model.to(resolve_device(args.device))
    splits = load_splits(args.dataset, args.data_dir)
    path = checkpoint_path(args.robustbench, args.dataset, args.threat_model, args.model_dir)
    out_dir = Path(args.out) if args.out else path.parent / args.robustbench
    reported = model.checkpoint_meta["robustbench"]["reported"]
    if reported:
        print(f"{args.robustbench}: the paper reports {reported[0]:.2f}% clean, "
              f"{reported[1]:.2f}% AutoAttack")
    return _evaluate_one(args, attacks, model, splits, threat, path, args.robustbench, out_dir)


def _evaluate_one(args, attacks, model, splits, threat, source, which, out_dir) -> int:
    """Evaluate one model that is not a run's checkpoint; write and print its report."""
    with exclusive_lock(out_dir / "eval_state", "evaluation state"):
        results = [evaluate_model(model, splits, threat, str(source), which, attacks,
                                  args.n_examples, restarts=args.restarts, seed=args.seed,
                                  checks=not args.no_checks,
                                  state_dir=out_dir / "eval_state" / which, log=log,
                                  backdoor=args.backdoor, per_attack=args.per_attack)]
        paths = write_report(results, out_dir)
    _print(source, results, attacks, paths, 1)
    return 0


def _print(source, results, attacks, paths, evaluated: int) -> None:
    first = results[0]
    tm = first["threat_model"]
    print(f"{source}: {first['dataset']} test set, {first['n']} images, {tm['norm']} eps "
          f"{tm['eps']:.4g}" + ("" if any(a.startswith("autoattack") for a in attacks) else
                                "; AutoAttack not run (add --autoattack)"))
    print(format_table(results))
    for r in results[:evaluated]:
        if r["cascade"]:
            print(f"{r['which']}: {cascade_line(r)}")
    for r in results[:evaluated]:
        if "backdoor" in r:
            b = r["backdoor"]
            print(f"{r['which']}: trigger {b['trigger']} -> class {b['target']}: success "
                  f"{100 * b['success_rate']:.2f}% of the {b['n_non_target']} test images of "
                  f"other classes")
    for r in results[:evaluated]:
        for c in r["checks"]:
            print(f"  [{c['status']:>7}] {r['which']} {c['name']}: {c['detail']}")
    json_path, md_path = paths
    print(f"report: {md_path}, {json_path}")




def cmd_pseudo_label(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="torchawp pseudo-label",
        description="Label unlabelled images with a trained (standard) model, for RST.")
    parser.add_argument("checkpoint", help="run directory or .safetensors checkpoint")
    parser.add_argument("--out", required=True, help="extra-data .npz to write")
    parser.add_argument("--images", default=None,
                        help=".npz with an 'images' array (default: the training images the "
                             "checkpoint's run left out with data.train_subset)")
    parser.add_argument("--min-confidence", type=number(0, strict=False, high=1), default=0.0,
                        help="keep only predictions at least this confident")
    parser.add_argument("--device", default="auto")
    args = parse(parser, argv)
    r = pseudo_label_file(args.checkpoint, args.out, args.images, args.min_confidence,
                          args.device)
    line = f"labelled {r['labelled']} of {r['total']} images -> {r['out']}"
    if "agreement" in r:
        line += f"; agreement with the hidden true labels {100 * r['agreement']:.1f}%"
    print(line)
    return 0
