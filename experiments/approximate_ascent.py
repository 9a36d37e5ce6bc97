"""AWP's exact ascent against the opt-in approximate one (``awp.ascent: last-pgd-step``: the
weight gradient of the last PGD iteration, taken in the attack's own backward), on digits.

AT-AWP with the default recipe (small CNN + BatchNorm, L-inf eps 0.2, PGD-10, 30 epochs, AWP
gamma 0.01 from epoch 11), 3 seeds each way; the final table's numbers (PGD-20, eval mode) of the
best and last checkpoints, and the training seconds of the AWP epochs.

    python experiments/approximate_ascent.py                # about 6 minutes on 2 cores
    python experiments/approximate_ascent.py --report-only

Writes experiments/results/approximate_ascent.{json,md}.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Optional

import torch
from scaffold import StudyOptions, run_study

from torchawp.training.run import train
from torchawp.config.recipes import load_recipe

ASCENTS = ("exact", "last-pgd-step")
SEEDS = (0, 1, 2)


def run(ascent: str, seed: int, out: Path) -> dict:
    cfg = load_recipe("digits")
    cfg.awp.ascent, cfg.seed, cfg.progress = ascent, seed, False
    cfg.out_dir = str(out / f"ascent_{ascent}_s{seed}")
    cfg.resume = (Path(cfg.out_dir) / "config.yaml").is_file()  # reused only if the same run
    result = train(cfg)
    awp_seconds = sum(r["train_seconds"] for r in result.history if r.get("perturbed"))
    row = {"ascent": ascent, "seed": seed, "awp_epoch_seconds": awp_seconds / sum(
        1 for r in result.history if r.get("perturbed"))}
    for which, r in (("best", result.best), ("last", result.last)):
        row[which] = {k: r[k] for k in ("epoch", "test_clean_acc", "test_robust_acc", "gap")}
    return row


def mean_std(values, scale: float = 100.0, digits: int = 2) -> str:
    values = [scale * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def render(rows: list[dict]) -> str:
    lines = ["| AWP ascent | best test clean | best test PGD-20 | best gap | last test clean | "
             "last test PGD-20 | last gap | seconds per AWP epoch |", "|---" * 8 + "|"]
    for ascent in ASCENTS:
        rs = [r for r in rows if r["ascent"] == ascent]
        cells = [mean_std([r[w][k] for r in rs]) for w in ("best", "last")
                 for k in ("test_clean_acc", "test_robust_acc", "gap")]
        cells.append(mean_std([r["awp_epoch_seconds"] for r in rs], 1.0))
        lines.append(f"| {ascent} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Options(StudyOptions):
    """The study's settings."""

    # where the runs go (a rerun reuses finished ones); None: a scratch directory
    out: Optional[str] = None


def measure(opts: Options, scratch: Path) -> list[dict]:
    torch.set_num_threads(2)
    out, rows = Path(opts.out) if opts.out else scratch, []
    for seed in SEEDS:  # the two ways side by side, seed by seed (machine drift hits both)
        for ascent in ASCENTS:
            rows.append(run(ascent, seed, out))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    raise SystemExit(run_study("approximate_ascent", __doc__, measure, render, Options))
