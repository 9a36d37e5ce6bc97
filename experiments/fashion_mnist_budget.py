"""Real data on a CPU: does AWP shrink the robust generalization gap on a Fashion-MNIST label
budget where AT overfits?

The shipped fashion_mnist recipe (small CNN with BatchNorm, L-inf eps 0.1, PGD-10 training),
its first stage --width channels wide (32: twice the recipe's, so that it can memorise), on a
label budget of --budget training images for --epochs epochs, LR 0.05 divided by 10 at half and
three quarters of the run; train robust accuracy (500 training images) and test robust accuracy
(first 1,000 test images), PGD-10 in eval mode, every 4 epochs. AT vs AT-AWP (gamma 0.01, AWP
from 10% of the epochs), 3 seeds each.

    python experiments/fashion_mnist_budget.py                 # about 30 minutes on 2 cores
    python experiments/fashion_mnist_budget.py --seeds 0 --methods at --budget 1000  # a pilot
    python experiments/fashion_mnist_budget.py --report-only   # re-render from the JSON

Needs Fashion-MNIST's IDX files (Debian: apt-get install dataset-fashion-mnist).
Writes experiments/results/fashion_mnist_budget.json, .md and a curves PNG; a pilot (another
budget, width or number of epochs) writes fashion_mnist_budget_pilots/bBUDGET_wWIDTH_eEPOCHS.*.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Literal

import torch
from scaffold import StudyOptions, run_study

from torchawp.config.recipes import load_recipe
from torchawp.runtime import cpu_name
from torchawp.training.run import train


@dataclasses.dataclass
class Options(StudyOptions):
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    methods: list[Literal["at", "at-awp"]] = dataclasses.field(
        default_factory=lambda: ["at", "at-awp"])
    # labelled training images
    budget: int = 500
    epochs: int = 60
    # channels of the CNN's first stage
    width: int = 32


def name(budget: int, width: int, epochs: int) -> str:
    """Where the results of these settings go: the study's, or a pilot's beside them (another
    budget, width or number of epochs)."""
    if (budget, width, epochs) == (500, 32, 60):
        return "fashion_mnist_budget"
    return f"fashion_mnist_budget_pilots/b{budget}_w{width}_e{epochs}"


def config(method: str, seed: int, budget: int, epochs: int, width: int, out: Path):
    cfg = load_recipe("fashion_mnist")
    cfg.method, cfg.seed, cfg.epochs, cfg.progress = method, seed, epochs, False
    cfg.model_args["width"] = width
    cfg.out_dir = str(out / f"{method}_b{budget}_w{width}_e{epochs}_s{seed}")
    cfg.data.train_subset = budget
    cfg.optim.milestones = [epochs // 2, 3 * epochs // 4]
    cfg.awp.warmup_epochs = max(1, epochs // 10)
    cfg.eval.every, cfg.eval.curve_every, cfg.eval.steps = 4, 1, 10
    cfg.eval.train_examples, cfg.eval.max_examples = 500, 1000
    return cfg


def summarize(run, seconds: float) -> dict:
    best, last = run.best, run.last
    curve = [{"epoch": r["epoch"], "train_robust": 100 * r["train_robust_acc"],
              "test_robust": 100 * r["test_robust_acc"]}
             for r in run.history if r.get("test_robust_acc") is not None
             and r.get("train_robust_acc") is not None]
    return {"best_epoch": run.best_epoch, "seconds": seconds,
            "best_test_robust": 100 * best["test_robust_acc"],
            "last_test_robust": 100 * last["test_robust_acc"],
            "last_test_clean": 100 * last["test_clean_acc"],
            "last_train_robust": 100 * last["train_robust_acc"],
            "best_gap": 100 * best["gap"], "last_gap": 100 * last["gap"], "curve": curve}


def mean_std(values) -> str:
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {s:.2f}"


def render(data: dict) -> str:
    s = data["settings"]
    lines = [f"Fashion-MNIST, {s['budget']:,} labelled training images, a small CNN of width "
             f"{s['width']}, {s['epochs']} epochs, "
             f"seeds {', '.join(map(str, s['seeds']))}; PGD-10 at eps 0.1 on 500 training and "
             f"the first 1,000 test images, best checkpoint selected on 500 validation images. "
             f"Measured on {data['cpu']} ({data['cores']} cores), "
             f"{data['minutes']:.0f} min in all.", "",
             "| method | best test robust | last test robust | drop best→last | gap (best) | "
             "gap (last) | train robust (last) | clean (last) |", "|---" * 8 + "|"]
    for method in s["methods"]:
        rs = [r for r in data["runs"] if r["method"] == method]
        col = lambda k: mean_std([r[k] for r in rs])  # noqa: E731
        drop = mean_std([r["best_test_robust"] - r["last_test_robust"] for r in rs])
        lines.append(f"| {method} | {col('best_test_robust')} | {col('last_test_robust')} | "
                     f"{drop} | {col('best_gap')} | {col('last_gap')} | "
                     f"{col('last_train_robust')} | {col('last_test_clean')} |")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = data["settings"]["methods"]
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.6), sharey=True,
                             squeeze=False)
    for ax, method in zip(axes[0], methods):
        for r in (r for r in data["runs"] if r["method"] == method):
            ep = [c["epoch"] for c in r["curve"]]
            ax.plot(ep, [c["train_robust"] for c in r["curve"]], color="tab:red", alpha=0.7)
            ax.plot(ep, [c["test_robust"] for c in r["curve"]], color="tab:blue", alpha=0.7)
        ax.set_title(f"{method}: train (red) vs test (blue) PGD-10")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("robust accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(opts: Options, runs: Path) -> dict:
    torch.set_num_threads(2)
    start, measured = time.perf_counter(), []
    for method in opts.methods:
        for seed in opts.seeds:
            t0 = time.perf_counter()
            run = train(config(method, seed, opts.budget, opts.epochs, opts.width, runs))
            measured.append({"method": method, "seed": seed,
                             **summarize(run, time.perf_counter() - t0)})
            print(method, seed, {k: v for k, v in measured[-1].items() if k != "curve"},
                  flush=True)
    return {"cpu": cpu_name(), "cores": torch.get_num_threads(),
            "minutes": (time.perf_counter() - start) / 60, "runs": measured,
            "settings": {"budget": opts.budget, "epochs": opts.epochs, "width": opts.width,
                         "seeds": opts.seeds, "methods": opts.methods}}


def figures(data: dict, written) -> None:
    s = data["settings"]
    written.file(f"{Path(name(s['budget'], s['width'], s['epochs'])).name}.png",
                 lambda tmp: plot(data, tmp))


if __name__ == "__main__":
    raise SystemExit(run_study(lambda o: name(o.budget, o.width, o.epochs), __doc__, measure,
                               render, Options, figures=figures))
