"""``torchawp landscape`` and ``torchawp flatness``: weight-space measurements of one or more
checkpoints, on the train and/or test split."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Iterator

from ..attacks import PGD, Threat
from ..data import load_splits
from ..errors import ConfigError
from ..flatness import average_case_flatness, worst_case_flatness
from ..landscape import landscape_1d, landscape_2d, plot_landscape_2d, plot_landscapes_1d
from ..robustbench import load_robustbench
from ..rundir import RunDir
from ..runtime import resolve_device
from ..suite import load_for_eval
from .common import Ticker, integer, log, number, option, parse


def _epoch_list(text: str):
    """argparse ``type`` of ``--epochs``: ``all``, or a comma list of epochs >= 1."""
    if text == "all":
        return text
    try:
        epochs = [int(e) for e in text.split(",")]
    except ValueError:
        epochs = []
    if not epochs or min(epochs) < 1:
        raise argparse.ArgumentTypeError(f"must be all or a comma list of epochs >= 1, such as "
                                         f"5,10,15 (got {text!r})")
    return epochs


def _checkpoints(paths: list[str], which: str,
                 epochs=None) -> list[tuple[str, str, str]]:
    """``(label, path, which)`` for every run directory / checkpoint and requested checkpoint;
    with ``epochs`` (``all`` or a list such as ``5,10``) the weights a run kept after those
    epochs (``keep_checkpoints``)."""
    out = []
    for path in paths:
        p = Path(path)
        name = p.name if p.is_dir() else p.stem
        if epochs is not None:
            kept = RunDir(p).kept_epochs() if p.is_dir() else []
            wanted = kept if epochs == "all" else epochs
            missing = sorted(set(wanted) - set(kept))
            if not kept or missing:
                asked = epochs if epochs == "all" else ",".join(map(str, epochs))
                raise ConfigError(f"--epochs {asked}: {path} kept the weights of epochs "
                                  f"{kept or 'none'}; train with --keep-checkpoints N to keep "
                                  f"every N-th epoch")
            out += [(f"{name}:e{e}", path, f"epoch{e}") for e in wanted]
            continue
        whiches = ["best", "last"] if which == "both" and p.is_dir() else (
            [which if which != "both" else "best"])
        out += [(f"{name}:{w}" if p.is_dir() else name, path, w) for w in whiches]
    return out


def _weight_space_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("paths", nargs="*", help="run directories or .safetensors checkpoints")
    parser.add_argument("--which", choices=["best", "last", "both", "ema", "ema_best",
                                            "ema_last"], default="best",
                        help="for a run directory: which checkpoint (both: best and last; ema: "
                             "the weight average's best, from a run trained with --ema)")
    option(parser, "--kept-epochs", former=("--epochs",), dest="epochs", type=_epoch_list,
           default=None, help="instead of --which: the weights a run kept after these epochs "
                              "(all, or a list such as 5,10,15; train with "
                              "--keep-checkpoints N)")
    parser.add_argument("--split", choices=["test", "train", "both"], default="test")
    parser.add_argument("--steps", type=integer(0), default=10,
                        help="PGD steps of the robust loss, re-run at every point (0: clean loss)")
    parser.add_argument("--pgd-restarts", type=integer(1), default=1,
                        help="random restarts of that PGD (the worst restart per example counts)")
    parser.add_argument("--seed", type=int, default=0,
                        help="same seed = same random directions/samples for every model")
    option(parser, "--out-dir", former=("--out",), dest="out", default=".", metavar="DIR",
           help="folder for the PNG/CSV/JSON outputs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    zoo = parser.add_argument_group("RobustBench zoo entries, from their checkpoints on disk")
    zoo.add_argument("--robustbench", action="append", default=[], metavar="NAME",
                     help="a zoo entry (repeatable), e.g. Wu2020Adversarial; read from "
                          "MODEL_DIR/DATASET/THREAT/NAME.pt, never downloaded")
    zoo.add_argument("--dataset", default="cifar10")
    zoo.add_argument("--threat-model", default="Linf", choices=["Linf", "L2"])
    zoo.add_argument("--model-dir", default="models")
    return parser


def _measurements(args) -> Iterator[tuple]:
    """``(label, split, model, x, y, attack)`` for every requested checkpoint and split: the
    model in eval mode, the first ``args.n_examples`` images, PGD-``args.steps`` on the
    checkpoint's training threat model (None for the clean loss)."""
    splits_wanted = ["train", "test"] if args.split == "both" else [args.split]
    if not args.paths and not args.robustbench:
        raise ConfigError("name the models to measure: run directories or checkpoints, or "
                          "--robustbench NAME")
    for label, path, which in _checkpoints(args.paths, args.which, args.epochs) + [
            (f"rb:{name}", name, "robustbench") for name in args.robustbench]:
        if which == "robustbench":
            model, threat = load_robustbench(path, args.dataset, args.threat_model,
                                             args.model_dir)
            model = model.to(resolve_device(args.device))
            splits = load_splits(args.dataset, args.data_dir)
        else:
            model, splits, threat = load_for_eval(path, which, args.device, args.data_dir)
        attack = _robust_attack(threat, args.steps, args.pgd_restarts)
        for split in splits_wanted:
            x, y = getattr(splits, split).tensors(0, args.n_examples)
            yield label, split, model, x, y, attack


def _robust_attack(threat: Threat, steps: int, restarts: int = 1):
    if steps <= 0:
        return None
    return PGD(threat.norm, threat.eps, threat.step_size, steps, restarts=restarts)


def cmd_landscape(argv: list[str]) -> int:
    parser = _weight_space_parser("torchawp landscape", "Robust weight loss landscapes along "
                                  "filter-normalised random directions (Li et al. 2018).")
    parser.add_argument("--n-examples", type=integer(1), default=500)
    parser.add_argument("--directions", type=integer(1), default=3)
    parser.add_argument("--points", type=integer(2), default=21)
    parser.add_argument("--radius", type=number(), default=1.0)
    parser.add_argument("--two-d", action="store_true", help="also a 2-D contour per model")
    args = parse(parser, argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {s: [] for s in (["train", "test"] if args.split == "both" else [args.split])}
    rows = []
    for label, split, model, x, y, attack in _measurements(args):
        log(f"landscape of {label} on {len(y)} {split} images: {args.directions} directions x "
            f"{args.points} points" + (" + 2-D" if args.two_d else ""))
        ls = landscape_1d(model, x, y, attack, args.directions, args.points, args.radius,
                          args.seed, progress=Ticker(f"landscape of {label}", "points"))
        curves[split].append((label, ls))
        rows += [(label, split, d, a, ls.loss[d][i], ls.acc[d][i])
                 for d in range(len(ls.loss)) for i, a in enumerate(ls.alphas)]
        if args.two_d:
            ls2 = landscape_2d(model, x, y, attack, max(5, args.points // 2), args.radius,
                               args.seed, progress=Ticker(f"2-D landscape of {label}",
                                                          "grid points"))
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
    parser = _weight_space_parser("torchawp flatness", "Average- and worst-case flatness of the "
                                  "robust loss in relative weight balls (Stutz et al. 2021).")
    parser.set_defaults(steps=20)
    parser.add_argument("--kind", choices=["average", "worst", "both"], default="both")
    parser.add_argument("--n-examples", type=integer(1), default=1000)
    parser.add_argument("--xi-average", type=number(), default=0.5)
    parser.add_argument("--xi-worst", type=number(), default=7.5e-4)
    parser.add_argument("--samples", type=integer(1), default=10, help="average-case samples")
    parser.add_argument("--passes", type=integer(1), default=20, help="worst-case passes")
    option(parser, "--worst-restarts", former=("--restarts",), dest="restarts",
           type=integer(1), default=10, help="worst-case restarts")
    args = parse(parser, argv)
    results = []
    for label, split, model, x, y, attack in _measurements(args):
        r = {"checkpoint": label, "epoch": model.checkpoint_meta.get("epoch"), "split": split,
             "steps": args.steps,
             "pgd_restarts": args.pgd_restarts, "seed": args.seed}
        log(f"flatness of {label} on {len(y)} {split} images")
        if args.kind in ("average", "both"):
            avg = average_case_flatness(model, x, y, attack, args.xi_average, args.samples,
                                        args.seed, progress=Ticker(
                                            f"average-case flatness of {label}", "samples"))
            r.update(loss=avg["loss"], average=avg["flatness"], xi_average=args.xi_average)
        if args.kind in ("worst", "both"):
            worst = worst_case_flatness(model, x, y, attack, args.xi_worst, args.passes,
                                        args.restarts, seed=args.seed, progress=Ticker(
                                            f"worst-case flatness of {label}",
                                            "passes (restarts x passes)"))
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
