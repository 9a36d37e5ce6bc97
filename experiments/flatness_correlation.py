"""Flatness across checkpoints (Stutz et al., ICCV 2021): does a flatter robust loss go with a
lower test robust loss and a smaller robust generalization gap, epoch by epoch?

AT and AT-AWP on digits with the default recipe (small CNN + BatchNorm, L-inf eps 0.2, PGD-10,
30 epochs), keeping the weights every 3 epochs; for every kept checkpoint the average-case
flatness (xi 0.5, 3 samples) and worst-case flatness (xi 7.5e-4, 3 passes x 2 restarts) of the
PGD-10 robust loss on the first 300 test images, next to the run's logged test robust loss and
gap at that epoch. Kendall's tau over all checkpoints of both runs, and per run, with a scatter
plot. Epochs 1-10 are AWP's warm-up, in which both runs are the same run (same seed), so the
checkpoints of epochs 3, 6 and 9 appear twice among "both runs"; "after warm-up" leaves them out.

    python experiments/flatness_correlation.py          # about 5 minutes on 2 cores

Writes experiments/results/flatness_correlation.{json,md,png}.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch
from scaffold import StudyOptions, run_study
from scipy.stats import kendalltau

from torchawp.attacks import PGD
from torchawp.training.run import train
from torchawp.weightspace.flatness import average_case_flatness, worst_case_flatness
from torchawp.config.recipes import load_recipe
from torchawp.training.rundir import RunDir
from torchawp.evaluation.opened import open_run

METHODS = ("at", "at-awp")


def config(method: str, out: Path):
    cfg = load_recipe("digits")
    cfg.method, cfg.progress, cfg.out_dir = method, False, str(out / f"flatcorr_{method}")
    cfg.keep_checkpoints = 3
    cfg.eval.curve_every = 3  # test robust loss and gap logged at every kept epoch
    return cfg


def flatness_at(run_dir: Path, epoch: int, n: int) -> dict:
    model, splits, threat = open_run(run_dir, f"epoch{epoch}", "cpu")
    x, y = splits.test.tensors(0, n)
    attack = PGD(threat.norm, threat.eps, threat.step_size, 10)
    avg = average_case_flatness(model, x, y, attack, xi=0.5, samples=3)
    worst = worst_case_flatness(model, x, y, attack, xi=7.5e-4, passes=3, restarts=2)
    return {"average": avg["flatness"], "worst": worst["flatness"], "loss": avg["loss"]}


def tau(rows, x_key, y_key) -> dict:
    t, p = kendalltau([r[x_key] for r in rows], [r[y_key] for r in rows])
    return {"tau": float(t), "p": float(p), "n": len(rows)}


def render(result: dict) -> str:
    lines = ["| checkpoints | flatness | vs test robust loss: tau (p) | vs gap: tau (p) |",
             "|---|---|---|---|"]
    for group, stats in result["kendall"].items():
        for kind in ("average", "worst"):
            a, b = stats[f"{kind}_vs_test_robust_loss"], stats[f"{kind}_vs_gap"]
            lines.append(f"| {group} ({a['n']}) | {kind}-case | {a['tau']:+.2f} ({a['p']:.3f}) "
                         f"| {b['tau']:+.2f} ({b['p']:.3f}) |")
    return "\n".join(lines) + "\n"


def plot(rows, path: Path) -> None:
    import matplotlib  # plotting only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    for method, color in zip(METHODS, ("tab:red", "tab:blue")):
        rs = [r for r in rows if r["method"] == method]
        for ax, key in zip(axes, ("average", "worst")):
            ax.scatter([r[key] for r in rs], [100 * r["gap"] for r in rs], color=color,
                       label=method)
            for r in rs:
                ax.annotate(str(r["epoch"]), (r[key], 100 * r["gap"]), fontsize=6)
    for ax, key in zip(axes, ("average", "worst")):
        ax.set_xlabel(f"{key}-case flatness of the robust loss")
        ax.set_ylabel("robust generalization gap (points)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("digits, every 3rd epoch (numbers: epoch)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@dataclasses.dataclass
class Options(StudyOptions):
    """The study's settings."""

    # where the runs go (finished ones are reused); None: a scratch directory
    out: Optional[str] = None
    # test images of each flatness measurement
    n_examples: int = 300


def measure(opts: Options, scratch: Path) -> dict:
    torch.set_num_threads(2)
    out, rows = Path(opts.out) if opts.out else scratch, []
    for method in METHODS:
        cfg = config(method, out)
        cfg.resume = (Path(cfg.out_dir) / "config.yaml").is_file()  # finished runs are reused
        history = {r["epoch"]: r for r in train(cfg).history}
        for epoch in RunDir(cfg.out_dir).kept_epochs():
            m = flatness_at(Path(cfg.out_dir), epoch, opts.n_examples)
            h = history[epoch]
            rows.append({"method": method, "epoch": epoch, **m, "gap": h["gap"],
                         "test_robust_loss": h["test_robust_loss"],
                         "test_robust_acc": h["test_robust_acc"]})
            print(rows[-1], flush=True)
    groups = {"both runs": rows,
              "both runs, after warm-up (epochs 12-30)": [r for r in rows if r["epoch"] > 10],
              **{m: [r for r in rows if r["method"] == m] for m in METHODS}}
    return {"rows": rows, "kendall": {
        g: {f"{k}_vs_{y}": tau(rs, k, y) for k in ("average", "worst")
            for y in ("test_robust_loss", "gap")} for g, rs in groups.items()}}


def figures(result: dict, written) -> None:
    written.file("flatness_correlation.png", lambda tmp: plot(result["rows"], tmp))


if __name__ == "__main__":
    raise SystemExit(run_study("flatness_correlation", __doc__, measure, render, Options,
                               figures=figures))
