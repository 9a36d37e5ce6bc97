"""CPU-scale study: does AWP shrink the robust generalization gap where AT overfits?

Digits with a 300-image label budget (the rest of the training set unused), the small CNN with
BatchNorm, L-inf eps 0.2, PGD-10 training, 100 epochs with LR 0.05 divided by 10 at epochs 50
and 75: AT memorises the training set (train robust accuracy far above test). AT vs AT-AWP
(gamma 0.01, 10 warmup epochs), 3 seeds each; then flatness of the robust loss (average- and
worst-case, Stutz et al.) of every best and last checkpoint, and the robust weight landscape of
seed 0.

    python experiments/robust_overfitting.py            # about 15 minutes on 2 cores
    python experiments/robust_overfitting.py --seeds 0   # one seed
    python experiments/robust_overfitting.py --report-only   # re-render from the JSON

Writes experiments/results/: robust_overfitting.md (the table), .json, curves and landscape PNGs.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
from pathlib import Path

import torch
from scaffold import StudyOptions, run_study


from torchawp.attacks import PGD
from torchawp.config.recipes import load_recipe
from torchawp.evaluation.opened import open_run
from torchawp.training.run import train
from torchawp.weightspace.flatness import average_case_flatness, worst_case_flatness
from torchawp.weightspace.landscape import landscape_1d, plot_landscapes_1d


@dataclasses.dataclass
class Options(StudyOptions):
    # the seeds of each method; the landscape is the first seed's
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])


def config(method: str, seed: int, out: Path):
    cfg = load_recipe("digits")
    cfg.method, cfg.seed, cfg.epochs, cfg.progress = method, seed, 100, False
    cfg.channels_last = False  # the memory format the recorded results were measured with
    cfg.out_dir = str(out / f"{method}_s{seed}")
    cfg.data.train_subset = 300
    cfg.optim.milestones = [50, 75]
    cfg.eval.every, cfg.eval.steps, cfg.eval.train_examples = 2, 10, 300
    cfg.eval.curve_every = 1  # curves at every evaluation, as recorded
    return cfg


def flatness(run_dir: Path, which: str) -> dict:
    model, splits, threat = open_run(run_dir, which, "cpu")
    x, y = splits.test.tensors(0, 500)
    attack = PGD(threat.norm, threat.eps, threat.step_size, 10)
    avg = average_case_flatness(model, x, y, attack, xi=0.5, samples=5)
    worst = worst_case_flatness(model, x, y, attack, xi=7.5e-4, passes=5, restarts=3)
    return {"average": avg["flatness"], "worst": worst["flatness"], "loss": avg["loss"]}


def mean_std(values, digits=2):
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def render(results: dict) -> str:
    """The markdown table: mean ± std over seeds."""
    rows = ["| method | best test PGD-10 | last test PGD-10 | drop best→last | gap (last) | "
            "train PGD-10 (last) | clean (last) | avg flatness (last) | worst flatness (last) |",
            "|---" * 9 + "|"]
    for method in ("at", "at-awp"):
        rs = [r for r in results.values() if r["method"] == method]
        col = lambda k: mean_std([r[k] for r in rs])  # noqa: E731
        rows.append(f"| {method} | {col('best_test_robust')} | {col('last_test_robust')} | "
                    f"{col('drop')} | {col('last_gap')} | {col('last_train_robust')} | "
                    f"{col('last_test_clean')} | "
                    f"{mean_std([r['flatness_last']['average'] for r in rs], 3)} | "
                    f"{mean_std([r['flatness_last']['worst'] for r in rs], 4)} |")
    return "\n".join(rows) + "\n"


def measure(opts: Options, runs: Path) -> dict:
    torch.set_num_threads(2)
    results = {}
    for method in ("at", "at-awp"):
        for seed in opts.seeds:
            cfg = config(method, seed, runs)
            cfg.resume = (Path(cfg.out_dir) / "last.state.pt").exists()
            run = train(cfg)
            best, last = run.best, run.last
            results[f"{method}_s{seed}"] = {
                "method": method, "seed": seed, "best_epoch": run.best_epoch,
                "best_test_robust": 100 * best["test_robust_acc"],
                "last_test_robust": 100 * last["test_robust_acc"],
                "drop": 100 * (best["test_robust_acc"] - last["test_robust_acc"]),
                "best_gap": 100 * best["gap"], "last_gap": 100 * last["gap"],
                "last_train_robust": 100 * last["train_robust_acc"],
                "last_test_clean": 100 * last["test_clean_acc"],
                "flatness_best": flatness(run.run_dir, "best"),
                "flatness_last": flatness(run.run_dir, "last"),
            }
            print(method, seed, results[f"{method}_s{seed}"], flush=True)
    return results


def from_runs(opts: Options, results: dict, runs: Path, written) -> None:
    """The first seed's training curves, and the robust weight landscapes of its last
    checkpoints, AT beside AT-AWP along the same directions."""
    curves = []
    for method in ("at", "at-awp"):
        run_dir = runs / f"{method}_s{opts.seeds[0]}"
        model, splits, threat = open_run(run_dir, "last", "cpu")
        x, y = splits.test.tensors(0, 300)
        attack = PGD(threat.norm, threat.eps, threat.step_size, 10)
        curves.append((method, landscape_1d(model, x, y, attack, directions=3, points=11)))
        written.file(f"curves_{method}.png",
                     lambda tmp, src=run_dir / "curves.png": shutil.copyfile(src, tmp))
    written.file("landscape_last.png", lambda tmp: plot_landscapes_1d(
        curves, tmp, "PGD-10 robust loss, digits test, last checkpoints, 3 directions"))


if __name__ == "__main__":
    raise SystemExit(run_study("robust_overfitting", __doc__, measure, render, Options,
                               from_runs=from_runs))
