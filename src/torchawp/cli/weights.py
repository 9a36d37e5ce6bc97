"""``torchawp landscape`` and ``torchawp flatness``: weight-space measurements of one or more
checkpoints, on the train and/or test split."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Iterator, Literal, Optional

import tyro

from ..attacks import PGD, Threat
from ..config.ranges import bounded
from ..errors import ConfigError
from ..evaluation.opened import open_robustbench, open_run, select_checkpoints
from ..io.report import report
from ..weightspace.flatness import average_case_flatness, flatness_table, worst_case_flatness
from ..weightspace.landscape import (landscape_1d, landscape_2d, landscape_summary,
                                     plot_landscape_2d, plot_landscapes_1d)
from .common import (DATA_DIR, DEVICE, MODEL_DIR, SELECTION, THREAT_MODEL, Ticker, log, parse,
                     positional, was)


# positional arguments, named in usage, help and errors
PATHS = positional("PATH", list[str])


@dataclasses.dataclass
class WeightSpaceOptions:
    """What the weight-space commands share: the checkpoints and the loss measured."""

    # run directories or .safetensors checkpoints
    paths: PATHS = dataclasses.field(default_factory=list)
    which: SELECTION = "all"
    # instead of --which: the weights a run kept after these epochs (all, or a list such as
    # 5,10,15, from a run trained with --keep-checkpoints N)
    kept_epochs: Annotated[Optional[str], was("--epochs")] = None
    # the images measured
    split: Literal["test", "train", "both"] = "test"
    # PGD steps of the robust loss, re-run at every point (0: clean loss)
    steps: int = bounded(10, 0)
    # random restarts of that PGD (the worst restart per example counts)
    attack_restarts: Annotated[int, was("--pgd-restarts")] = bounded(1, 1)
    # same seed = same random directions/samples for every model
    seed: int = 0
    # folder for the PNG/CSV/JSON outputs
    out_dir: Annotated[str, was("--out")] = "."
    device: DEVICE = "auto"
    data_dir: DATA_DIR = None
    # a RobustBench zoo entry (repeatable), e.g. Wu2020Adversarial; read from
    # MODEL_DIR/DATASET/THREAT/NAME.pt, never downloaded
    robustbench: Annotated[list[str], tyro.conf.UseAppendAction] = dataclasses.field(
        default_factory=list)
    # the --robustbench entries' dataset
    dataset: str = "cifar10"
    threat_model: THREAT_MODEL = "Linf"
    model_dir: MODEL_DIR = "models"


@dataclasses.dataclass
class LandscapeOptions(WeightSpaceOptions):
    """Robust weight loss landscapes along filter-normalised random directions (Li et al.
    2018)."""

    # first N images of the split
    n_examples: int = bounded(500, 1)
    # random filter-normalised directions
    directions: int = bounded(3, 1)
    # points along each direction, from -radius to radius
    points: int = bounded(21, 2)
    # the largest step along a direction
    radius: float = bounded(1.0, 0, strict=True)
    # also a 2-D contour per model
    two_d: bool = False


@dataclasses.dataclass
class FlatnessOptions(WeightSpaceOptions):
    """Average- and worst-case flatness of the robust loss in relative weight balls (Stutz et
    al. 2021)."""

    # PGD steps of the robust loss, re-run at every point (0: clean loss)
    steps: int = bounded(20, 0)
    # average-case, worst-case or both
    kind: Literal["average", "worst", "both"] = "both"
    # first N images of the split
    n_examples: int = bounded(1000, 1)
    # relative radius of the average-case random perturbations
    xi_average: float = bounded(0.5, 0, strict=True)
    # relative radius of the worst-case ball
    xi_worst: float = bounded(7.5e-4, 0, strict=True)
    # average-case samples
    samples: int = bounded(10, 1)
    # worst-case passes
    passes: int = bounded(20, 1)
    # worst-case restarts
    worst_restarts: Annotated[int, was("--restarts")] = bounded(10, 1)


def _measurements(args) -> Iterator[tuple]:
    """``(label, split, opened, x, y, attack)`` for every requested checkpoint and split: the
    opened model (eval mode), the first ``args.n_examples`` images, PGD-``args.steps`` on the
    checkpoint's training threat model (None for the clean loss)."""
    splits_wanted = ["train", "test"] if args.split == "both" else [args.split]
    if not args.paths and not args.robustbench:
        raise ConfigError("name the models to measure: run directories or checkpoints, or "
                          "--robustbench NAME")
    for label, path, which in select_checkpoints(args.paths, args.which, args.kept_epochs) + [
            (f"rb:{name}", name, "robustbench") for name in args.robustbench]:
        opened = (open_robustbench(path, args.dataset, args.threat_model, args.model_dir,
                                   args.device, args.data_dir) if which == "robustbench"
                  else open_run(path, which, args.device, args.data_dir))
        attack = _robust_attack(opened.threat, args.steps, args.attack_restarts)
        for split in splits_wanted:
            x, y = getattr(opened.splits, split).tensors(0, args.n_examples)
            yield label, split, opened, x, y, attack


def _robust_attack(threat: Threat, steps: int, restarts: int = 1):
    if steps <= 0:
        return None
    return PGD(threat.norm, threat.eps, threat.step_size, steps, restarts=restarts)


def cmd_landscape(argv: list[str]) -> int:
    args = parse(LandscapeOptions, argv, "torchawp landscape")
    with report(args.out_dir, "--out-dir") as written:
        return _landscape(args, written)


def _landscape(args, written) -> int:
    out = written.folder
    curves = {s: [] for s in (["train", "test"] if args.split == "both" else [args.split])}
    rows = []
    for label, split, opened, x, y, attack in _measurements(args):
        model = opened.model
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
            written.file(f"landscape2d_{safe}_{split}.png", lambda tmp: plot_landscape_2d(
                f"{label} ({split})", ls2, tmp))
    kind = f"PGD-{args.steps} robust loss" if args.steps else "clean loss"
    for split, items in curves.items():
        written.file(f"landscape_{split}.png", lambda tmp: plot_landscapes_1d(
            items, tmp, f"{kind}, {split}, {args.directions} directions, seed {args.seed}"))
    written.csv("landscape.csv", ["checkpoint", "split", "direction", "a", "loss", "acc"], rows)
    print(landscape_summary(curves, kind, args.radius))
    print(f"wrote {', '.join(str(out / f'landscape_{s}.png') for s in curves)}, "
          f"{out / 'landscape.csv'}")
    return 0


def cmd_flatness(argv: list[str]) -> int:
    args = parse(FlatnessOptions, argv, "torchawp flatness")
    with report(args.out_dir, "--out-dir") as written:  # before the work: a file in the way
        return _flatness(args, written)                 # is one line


def _flatness(args, written) -> int:
    out = written.folder
    results = []
    for label, split, opened, x, y, attack in _measurements(args):
        model = opened.model
        r = {"checkpoint": label, "epoch": opened.epoch, "split": split,
             "steps": args.steps,
             "pgd_restarts": args.attack_restarts, "seed": args.seed}
        log(f"flatness of {label} on {len(y)} {split} images")
        if args.kind in ("average", "both"):
            avg = average_case_flatness(model, x, y, attack, args.xi_average, args.samples,
                                        args.seed, progress=Ticker(
                                            f"average-case flatness of {label}", "samples"))
            r.update(loss=avg["loss"], average=avg["flatness"], xi_average=args.xi_average)
        if args.kind in ("worst", "both"):
            worst = worst_case_flatness(model, x, y, attack, args.xi_worst, args.passes,
                                        args.worst_restarts, seed=args.seed, progress=Ticker(
                                            f"worst-case flatness of {label}",
                                            "passes (restarts x passes)"))
            r.update(loss=worst["loss"], worst=worst["flatness"], xi_worst=args.xi_worst)
        results.append(r)
    written.json("flatness.json", results)
    kind = f"PGD-{args.steps} robust loss" if args.steps else "clean loss"
    print(flatness_table(results, kind))
    print(f"wrote {out / 'flatness.json'}")
    return 0
