"""The weight-perturbation family on small data: does AWP's company help AT, and how?

AT alone, and AT with AWP, RWP, SAM, random weight noise of AWP's size, consistency
regularisation, and consistency with AWP, 3 seeds each, on digits (the default recipe: small
CNN with BatchNorm, L-inf eps 0.2, 30 epochs, perturbations from epoch 11) and on Fashion-MNIST
(the CPU recipe: L-inf eps 0.1, 10 epochs, perturbations from epoch 4) on a 2,000-image
training subset (the recipe's 10,000 would take 12 hours for the 42 runs on 2 cores). Every arm
uses the same augmentation, random crops padded by an eighth of the image (1 px on digits, 3
on Fashion-MNIST; consistency compares two augmented views, and the arms without it must see
the same images), and the perturbations take the recipes' sizes:
gamma 0.01 (AWP, RWP, noise), SAM's rho 0.05, RWP's 10 steps and threshold 1.7.

Reported per arm (mean ± std over seeds): test robust accuracy (PGD-20, eval mode) of the
best checkpoint (selected on the validation split) and of the last, the robust generalization
gap of the last (train minus test PGD-20), Stutz et al.'s average-case (xi 0.5, 3 samples) and
worst-case (xi 7.5e-4, 3 passes x 2 restarts) flatness of the last checkpoint's PGD-10 robust
loss on 500 test images. What each costs is measured apart, in benchmarks/perturbation_cost.py.

    python experiments/perturbation_study.py                  # about an hour on 2 cores
    python experiments/perturbation_study.py --report-only    # re-render the committed JSON

Writes experiments/results/perturbation_study.{json,md}; an interrupted study resumes its runs.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from scaffold import Partial, StudyOptions, run_study

from torchawp.attacks import PGD
from torchawp.config.recipes import load_recipe
from torchawp.evaluation.opened import open_run
from torchawp.training.run import train
from torchawp.weightspace.flatness import average_case_flatness, worst_case_flatness

# arm -> (weight perturbation, consistency weight)
ARMS = {"AT": ("none", 0.0), "AT-AWP": ("awp", 0.0), "AT-RWP": ("rwp", 0.0),
        "AT-SAM": ("sam", 0.0), "AT + random noise": ("random-noise", 0.0),
        "AT + consistency": ("none", 1.0), "AT + consistency + AWP": ("awp", 1.0)}
RECIPES = {"digits": "digits", "fashion-mnist": "fashion_mnist"}


@dataclasses.dataclass
class Options(StudyOptions):
    """The study's settings."""

    # datasets (digits, fashion-mnist)
    datasets: tuple[str, ...] = ("digits", "fashion-mnist")
    seeds: tuple[int, ...] = (0, 1, 2)
    # Fashion-MNIST's training subset
    fashion_subset: int = 2000
    # where Fashion-MNIST's IDX files are (None: the dataset's default)
    data_dir: str | None = None


def config(dataset: str, arm: str, seed: int, opts: Options, out: Path):
    cfg = load_recipe(RECIPES[dataset])
    perturbation, weight = ARMS[arm]
    cfg.method, cfg.seed, cfg.progress = "at", seed, False
    cfg.perturbation.name, cfg.consistency.weight = perturbation, weight
    cfg.data.augment = "crop"
    cfg.data.crop_pad = 1 if dataset == "digits" else 3  # an eighth of 8x8 and of 28x28
    if dataset == "fashion-mnist":
        cfg.data.train_subset, cfg.data.data_dir = opts.fashion_subset, opts.data_dir
    cfg.out_dir = str(out / f"{dataset}_{arm.replace(' ', '')}_s{seed}")
    return cfg


def flatness(run_dir: str) -> dict:
    model, splits, threat = open_run(run_dir, "last", "cpu")
    x, y = splits.test.tensors(0, 500)
    attack = PGD(threat.norm, threat.eps, threat.step_size, 10)
    avg = average_case_flatness(model, x, y, attack, xi=0.5, samples=3)
    worst = worst_case_flatness(model, x, y, attack, xi=7.5e-4, passes=3, restarts=2)
    return {"average": avg["flatness"], "worst": worst["flatness"]}


def one_run(cfg) -> dict:
    result = train(cfg)
    best, last = result.best, result.last
    kept = [r["rwp_kept"] for r in result.history if "rwp_kept" in r]
    return {"best_robust": best["test_robust_acc"], "last_robust": last["test_robust_acc"],
            "last_clean": last["test_clean_acc"], "last_gap": last["gap"],
            "best_epoch": best["epoch"],
            "rwp_kept": statistics.mean(kept) if kept else None,
            **flatness(result.run_dir)}


def measure(opts: Options, scratch: Path) -> dict:
    settings = {"datasets": list(opts.datasets), "seeds": list(opts.seeds),
                "fashion_subset": opts.fashion_subset,
                "arms": {arm: list(how) for arm, how in ARMS.items()}}
    partial = Partial("perturbation_study", settings)  # an interrupted study resumes
    runs = {}
    for d in opts.datasets:
        runs[d] = {arm: [] for arm in ARMS}
        for seed in opts.seeds:  # every arm of a seed before the next seed
            for arm in ARMS:
                cfg = config(d, arm, seed, opts, scratch)
                runs[d][arm].append(partial.run(f"{d}/{arm}/{seed}", lambda: one_run(cfg)))
    partial.done()
    return {**settings, "runs": runs}


# (key, column, scale, digits)
COLUMNS = (("best_robust", "best: test PGD-20", 100, 2),
           ("last_robust", "last: test PGD-20", 100, 2), ("last_clean", "last: test clean", 100, 2),
           ("last_gap", "last: gap", 100, 2), ("average", "flatness: average", 1, 3),
           ("worst", "flatness: worst", 1, 4))


def render(data: dict) -> str:
    out = []
    for dataset, arms in data["runs"].items():
        out += [f"**{dataset}** ({len(data['seeds'])} seeds; mean ± std)", "",
                "| arm | " + " | ".join(c for _, c, _, _ in COLUMNS) + " |",
                "|---|" + "---|" * len(COLUMNS)]
        for arm, runs in arms.items():
            cells = []
            for key, _, scale, digits in COLUMNS:
                values = [scale * r[key] for r in runs]
                cells.append(f"{statistics.mean(values):.{digits}f} ± "
                             f"{statistics.stdev(values):.{digits}f}")
            out.append(f"| {arm} | " + " | ".join(cells) + " |")
        kept = [r["rwp_kept"] for r in arms["AT-RWP"]]
        out += ["", f"RWP's examples below its threshold (the share that drove its ascent), "
                    f"mean over its epochs: {', '.join(f'{100 * k:.0f}%' for k in kept)} "
                    f"(seeds {', '.join(map(str, data['seeds']))}).", ""]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(run_study("perturbation_study", __doc__, measure, render, Options))
