"""Weight averaging on digits: does an EMA of the weights move AT-AWP's robust generalization
gap and its last-checkpoint robustness?

AT and AT-AWP with the default digits recipe (small CNN + BatchNorm, L-inf eps 0.2, PGD-10,
30 epochs, 8 steps an epoch) and ``--ema 0.99`` (an average over about 100 steps, 12 epochs:
0.995, Wang et al.'s CIFAR value, would average over most of this 240-step run), 3 seeds each.
Every run reports its own best and last checkpoints and the average's (``ema best``, selected
on the validation split like best, and ``ema last``), PGD-20 in eval mode.

    python experiments/ema_study.py                 # about 7 minutes on 2 cores
    python experiments/ema_study.py --report-only   # re-render from the committed JSON

Writes experiments/results/ema_study.{json,md}.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from scaffold import StudyOptions, run_study

from torchawp.training.run import train
from torchawp.config.recipes import load_recipe

METHODS, SEEDS, DECAY = ("at", "at-awp"), (0, 1, 2), 0.99
ROWS = ("best", "last", "ema best", "ema last")
COLUMNS = (("test_clean_acc", "test clean"), ("test_robust_acc", "test PGD-20"),
           ("train_robust_acc", "train PGD-20"), ("gap", "gap"))


def run(method: str, seed: int, out: Path) -> dict:
    cfg = load_recipe("digits")
    cfg.method, cfg.seed, cfg.ema, cfg.progress = method, seed, DECAY, False
    cfg.out_dir = str(out / f"{method}_s{seed}")
    result = train(cfg)
    return {name: {k: r.get(k) for k, _ in COLUMNS} | {"epoch": r["epoch"]}
            for name, r in result.rows()}


def render(data: dict) -> str:
    lines = ["| method | checkpoint | " + " | ".join(c for _, c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for method in METHODS:
        runs = data["runs"][method]
        for row in ROWS:
            cells = []
            for key, _ in COLUMNS:
                values = [100 * r[row][key] for r in runs]
                cells.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}")
            lines.append(f"| {method} | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measure(opts: StudyOptions, scratch: Path) -> dict:
    return {"decay": DECAY, "seeds": list(SEEDS),
            "runs": {m: [run(m, s, scratch) for s in SEEDS] for m in METHODS}}


if __name__ == "__main__":
    raise SystemExit(run_study("ema_study", __doc__, measure, render))
