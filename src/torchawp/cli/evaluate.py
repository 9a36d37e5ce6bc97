"""``torchawp eval`` (the checkpoint suite) and ``torchawp pseudo-label``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import tyro

from ..attacks import attack_names, autoattack_available, check_attack_names
from ..config.ranges import bounded
from ..errors import ConfigError
from ..evaluation.accuracy import EVAL_SEED
from ..evaluation.opened import open_model
from ..evaluation.report import summary, write_report
from ..evaluation.suite import DEFAULT_ATTACKS, evaluate_opened, evaluate_run
from ..io.paths import exclusive_lock, output_files
from ..studies.backdoor import Trigger
from ..training.pseudo_label import pseudo_label_file
from .common import (DATA_DIR, DEVICE, MODEL_DIR, SELECTION, THREAT_MODEL, log, parse, positional,
                     was)


# positional arguments, named in usage, help and errors
OPTIONAL_PATH = positional("PATH", Optional[str])
CHECKPOINT = positional("CHECKPOINT")


@dataclasses.dataclass
class EvalOptions:
    """Robustness of a checkpoint: clean, FGSM, PGD-20/100, CW-inf, AutoAttack, per-example
    worst case, gap and gradient-masking checks."""

    # run directory (best and last) or .safetensors checkpoint
    path: OPTIONAL_PATH = None
    which: SELECTION = "all"
    attacks: Annotated[Optional[list[str]], tyro.conf.arg(help=(
        f"{attack_names()} (K: steps; torchawp list explains each); None: "
        f"{' '.join(DEFAULT_ATTACKS)}"))] = None
    # add AutoAttack (needs the autoattack extra; slow on CPU)
    autoattack: bool = False
    # with --autoattack: standard (the leaderboards'), plus, or rand (for randomised
    # defences)
    autoattack_version: Literal["standard", "plus", "rand"] = "standard"
    # first N test images; None: all
    n_examples: Optional[int] = bounded(None, 1)
    # random restarts of PGD and CW (the worst restart per example counts)
    attack_restarts: Annotated[int, was("--restarts")] = bounded(1, 1)
    # the threat model's radius; None: the training eps
    eps: Optional[float] = bounded(None, 0, strict=True)
    # the threat model's norm; None: the training norm
    norm: Optional[Literal["linf", "l2"]] = None
    seed: Annotated[int, tyro.conf.arg(help=(
        "seed of the attacks' random starts (as in training's per-epoch evaluation)"))] = \
        EVAL_SEED
    # run every attack on every image and report each one's accuracy; otherwise a cascade:
    # PGD-20 and AutoAttack on every image, the other attacks, cheapest first, only on the
    # images still robust, with the same worst case
    per_attack: bool = False
    # the sanity checks (--no-checks skips them)
    checks: bool = True
    # where eval.json / eval.md go; None: the run directory, or beside the checkpoint
    out_dir: Annotated[Optional[str], was("--out")] = None
    device: DEVICE = "auto"
    data_dir: DATA_DIR = None
    # with --target: also the success rate of this backdoor trigger (patch:S or
    # pixels:N[:SEED]; torchawp backdoor) on test images of the other classes
    trigger: Optional[str] = None
    # the trigger's target class
    target: Optional[int] = bounded(None, 0)
    # a model torchawp never trained (instead of PATH): module.path:factory returning the
    # nn.Module (on PYTHONPATH)
    model: Optional[str] = None
    # with --model: keyword arguments of the factory, a YAML mapping
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    # with --model: its state dict, .safetensors or .pt (loaded weights_only)
    weights: Optional[str] = None
    # the dataset of --model (torchawp list) or of --robustbench; None: cifar10 there
    dataset: Annotated[Optional[str], was("--data")] = None
    # with --model: the PGD step; None: eps / 4
    step_size: Optional[float] = bounded(None, 0, strict=True)
    # with --model: MEAN STD, per-channel comma lists; the model expects normalised input
    # and is wrapped so that attacks work in [0, 1]
    normalize: Optional[tuple[str, str]] = None
    # a RobustBench zoo entry, from its checkpoint on disk (instead of PATH): e.g.
    # Wu2020Adversarial (the AWP paper's TRADES-AWP WRN-34-10); read from
    # MODEL_DIR/DATASET/THREAT/NAME.pt, never downloaded
    robustbench: Optional[str] = None
    threat_model: THREAT_MODEL = "Linf"
    model_dir: MODEL_DIR = "models"


def cmd_eval(argv: list[str]) -> int:
    args = parse(EvalOptions, argv, "torchawp eval")
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
    if args.model is not None or args.robustbench is not None:
        return _eval_other(args, attacks)
    if args.path is None:
        raise ConfigError("torchawp eval needs a run directory or checkpoint, or --model with "
                          "--weights, --dataset and --eps for a model torchawp did not train")
    results, paths, same = evaluate_run(
        args.path, args.which, args.out_dir, args.device, args.data_dir, args.eps, args.norm,
        attacks=attacks, n_examples=args.n_examples, restarts=args.attack_restarts,
        seed=args.seed, checks=args.checks, log=log, backdoor=args.backdoor,
        per_attack=args.per_attack)
    _print(args.path, results, attacks, paths, same)
    for last, best in same.items():
        print(f"{best} and {last} are the same weights: evaluated once")
    return 0


def _eval_other(args, attacks) -> int:
    """``torchawp eval --model module:factory --weights FILE --dataset NAME --eps E`` or
    ``torchawp eval --robustbench NAME`` (the entry's threat model unless ``--eps`` /
    ``--norm`` say otherwise; the report names the entry and its file's SHA-256)."""
    normalize = None
    if args.normalize is not None:
        try:
            normalize = tuple([float(v) for v in s.split(",")] for s in args.normalize)
        except ValueError:
            raise ConfigError(f"--normalize takes two comma lists of numbers, MEAN and STD "
                              f"(got {' '.join(args.normalize)})") from None
    opened = open_model(args.path, model=args.model, weights=args.weights,
                        robustbench=args.robustbench, dataset=args.dataset,
                        threat_model=args.threat_model, model_dir=args.model_dir,
                        model_args=args.model_args, normalize=normalize, eps=args.eps,
                        norm=args.norm, step_size=args.step_size, device=args.device,
                        data_dir=args.data_dir)
    source = Path(opened.source)
    out_dir = Path(args.out_dir) if args.out_dir else (
        source.parent / args.robustbench if args.robustbench else source.parent)
    reported = (opened.meta.get("robustbench") or {}).get("reported")
    if reported:
        print(f"{args.robustbench}: the paper reports {reported[0]:.2f}% clean, "
              f"{reported[1]:.2f}% AutoAttack")
    with exclusive_lock(out_dir / "eval_state", "evaluation state"):
        results = [evaluate_opened(opened, attacks, args.n_examples,
                                   restarts=args.attack_restarts, seed=args.seed,
                                   checks=args.checks,
                                   state_dir=out_dir / "eval_state" / opened.which, log=log,
                                   backdoor=args.backdoor, per_attack=args.per_attack)]
        paths = write_report(results, out_dir)
    _print(opened.source, results, attacks, paths)
    return 0


def _print(source, results, attacks, paths, copied=()) -> None:
    print(summary(source, results, attacks, copied))
    json_path, md_path = paths
    print(f"report: {md_path}, {json_path}")


@dataclasses.dataclass
class PseudoLabelOptions:
    """Label unlabelled images with a trained (standard) model, for RST."""

    # run directory or .safetensors checkpoint
    checkpoint: CHECKPOINT
    # extra-data .npz to write
    out: str
    # .npz with an 'images' array; None: the training images the checkpoint's run left
    # out with data.train_subset
    images: Optional[str] = None
    # keep only predictions at least this confident
    min_confidence: float = bounded(0.0, 0, high=1)
    device: DEVICE = "auto"
    # replace --out if it exists
    overwrite: bool = False


def cmd_pseudo_label(argv: list[str]) -> int:
    args = parse(PseudoLabelOptions, argv, "torchawp pseudo-label")
    output_files("--out", [args.out], args.overwrite)
    r = pseudo_label_file(args.checkpoint, args.out, args.images, args.min_confidence,
                          args.device)
    line = f"labelled {r['labelled']} of {r['total']} images -> {r['out']}"
    if "agreement" in r:
        line += f"; agreement with the hidden true labels {100 * r['agreement']:.1f}%"
    print(line)
    return 0
