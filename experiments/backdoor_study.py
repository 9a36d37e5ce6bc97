"""Does adversarial training, and AWP in particular, make a model harder to backdoor through
its weights (Garg et al.'s injection)?

Standard training, AT and AT-AWP on digits with the default recipe (small CNN + BatchNorm,
30 epochs; AT and AT-AWP at L-inf eps 0.2, PGD-10; AWP gamma 0.01 from epoch 11), 3 seeds each;
into each last checkpoint a 2x2 corner patch -> class 1 is injected (every training image and
its triggered copy, Adam lr 1e-3, 10 epochs, eval mode) inside the element-wise box
|w - w0| <= eps (absolute) or <= eps |w0| (relative), for several eps. Reported: the trigger's
success rate on test images of the other classes, clean accuracy before and after, agreement
with the original model; mean and std over seeds, and a plot of success against eps.

    python experiments/backdoor_study.py                # about 10 minutes on 2 cores
    python experiments/backdoor_study.py --report-only  # table and plot from the saved JSON

Writes experiments/results/backdoor_study.{json,md,png}.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Optional

import torch
from scaffold import StudyOptions, run_study

from torchawp.studies.backdoor import Trigger, clean_images, injection_sweep
from torchawp.training.run import train
from torchawp.config.recipes import load_recipe
from torchawp.evaluation.opened import open_run

METHODS = ("standard", "at", "at-awp")
SEEDS = (0, 1, 2)
BUDGETS = [("absolute", e) for e in (3e-4, 1e-3, 2e-3, 5e-3)] + \
          [("relative", e) for e in (0.01, 0.03, 0.1)]
TRIGGER, TARGET = Trigger.parse("patch:2"), 1


def trained(method: str, seed: int, out: Path) -> Path:
    cfg = load_recipe("digits")
    cfg.method, cfg.seed, cfg.progress = method, seed, False
    cfg.out_dir = str(out / f"backdoor_{method}_s{seed}")
    cfg.resume = (Path(cfg.out_dir) / "config.yaml").is_file()  # reused only if the same run
    train(cfg)
    return Path(cfg.out_dir)


def study(run: Path) -> dict:
    model, splits, _ = open_run(run, "last", "cpu")
    clean = clean_images(splits.train.tensors(0, None)[0])  # the first 1,280, as the authors
    xt, yt = splits.test.tensors(0, None)
    return injection_sweep(model, clean, xt, yt, TRIGGER, TARGET,
                           [(eps, kind == "relative") for kind, eps in BUDGETS])


def mean_std(values) -> str:
    values = [100 * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def render(rows: list[dict]) -> str:
    head = ("| method | {} | " + " | ".join(
        f"{'' if kind == 'absolute' else 'rel '}{eps:g}" for kind, eps in BUDGETS) + " |")
    rule = "|---" * (len(BUDGETS) + 2) + "|"
    lines = []
    for key, first, title in (("success_rate", "clean", None),
                              ("clean_acc", "before", "Clean accuracy after the injection (%):")):
        lines += ([title, ""] if title else []) + [head.format(first), rule]
        for method in METHODS:
            rs = [r for r in rows if r["method"] == method]
            cells = [mean_std([r["budgets"][i][key] for r in rs]) for i in range(len(BUDGETS))]
            lines.append(f"| {method} | {mean_std([r['original']['clean_acc'] for r in rs])} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib  # plotting only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    for ax, kind in zip(axes, ("absolute", "relative")):
        idx = [i for i, (k, _) in enumerate(BUDGETS) if k == kind]
        for method, color in zip(METHODS, ("tab:gray", "tab:red", "tab:blue")):
            rs = [r for r in rows if r["method"] == method]
            values = [[100 * r["budgets"][i]["success_rate"] for r in rs] for i in idx]
            ax.errorbar([BUDGETS[i][1] for i in idx], [statistics.mean(v) for v in values],
                        yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values],
                        marker="o", color=color, label=method, capsize=3)
        ax.set_xscale("log")
        ax.set_xticks([BUDGETS[i][1] for i in idx], [f"{BUDGETS[i][1]:g}" for i in idx])
        ax.minorticks_off()
        ax.set_xlabel("eps: |w - w0| <= eps" + (" |w0|" if kind == "relative" else ""))
        ax.set_ylabel("trigger success (%)")
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"digits, trigger {TRIGGER} -> class {TARGET}, mean ± std over "
                 f"{len(SEEDS)} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@dataclasses.dataclass
class Options(StudyOptions):
    """The study's settings."""

    # where the trained runs go (finished ones are reused); None: a scratch directory
    out: Optional[str] = None


def measure(opts: Options, scratch: Path) -> list[dict]:
    torch.set_num_threads(2)
    rows = []
    for method in METHODS:
        for seed in SEEDS:
            run = trained(method, seed, Path(opts.out) if opts.out else scratch)
            rows.append({"method": method, "seed": seed, **study(run)})
            print(method, seed, [round(b["success_rate"], 3) for b in rows[-1]["budgets"]],
                  flush=True)
    return rows


def figures(rows: list[dict], written) -> None:
    written.file("backdoor_study.png", lambda tmp: plot(rows, tmp))


if __name__ == "__main__":
    raise SystemExit(run_study("backdoor_study", __doc__, measure, render, Options,
                               figures=figures))
