"""The Fashion-MNIST CPU recipe, run as the README's walk-through runs it: the two commands,
timed, and what they print.

    torchawp train --dataset fashion-mnist --out-dir RUN   # the fashion_mnist recipe
    torchawp eval RUN --n-examples 1000

Needs Fashion-MNIST's IDX files (Debian: apt-get install dataset-fashion-mnist).

    python experiments/fashion_mnist_recipe.py                # about 11 minutes on 2 cores
    python experiments/fashion_mnist_recipe.py --report-only  # re-render from the JSON

Writes experiments/results/fashion_mnist_recipe.json (and .md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scaffold import StudyOptions, run_study

from torchawp.runtime import cpu_name


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torchawp.cli", *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return time.perf_counter() - start


def render(data: dict) -> str:
    lines = [f"Measured on {data['cpu']} ({data['cores']} cores): `torchawp train` "
             f"{data['train_seconds'] / 60:.1f} min (estimated after the first epoch: "
             f"{data['estimated_seconds'] / 60:.1f} min), `torchawp eval --n-examples 1000` "
             f"{data['eval_seconds'] / 60:.1f} min.", "",
             "| checkpoint | clean | PGD-20 | robust (worst case) | gap |", "|---|---|---|---|---|"]
    for r in data["eval"]:
        lines.append(f"| {r['which']} (epoch {r['epoch']}) | {100 * r['clean']:.2f} | "
                     f"{100 * r['pgd20']:.2f} | {100 * r['robust']:.2f} | "
                     f"{100 * r['gap']:.2f} |")
    return "\n".join(lines) + "\n"


def measure(opts: StudyOptions, scratch: Path) -> dict:
    run = scratch / "run"
    train = timed(["train", "--dataset", "fashion-mnist", "--out-dir", str(run),
                   "--no-progress"])
    evaluate = timed(["eval", str(run), "--n-examples", "1000"])
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    rows = json.loads((run / "eval.json").read_text())
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "train_seconds": train,
            "estimated_seconds": first["estimated_seconds"], "eval_seconds": evaluate,
            "eval": [{"which": r["which"], "epoch": r["epoch"],
                      "clean": r["accuracy"]["clean"], "pgd20": r["accuracy"]["pgd20"],
                      "robust": r["robust_acc"], "gap": r["gap"]} for r in rows]}


if __name__ == "__main__":
    raise SystemExit(run_study("fashion_mnist_recipe", __doc__, measure, render))
