"""Beggel et al.'s comparison on digits and Fashion-MNIST: AE, AAE and AAE + ITSR as the
training set's contamination rises, and one more row: AWP on the autoencoder's steps.

One class is normal (default 0), the rest are anomalies; the training set is the normal
class's training images (at most 1,000) with 0%, 5%, 10% or 20% of it drawn from the other
classes; the test set is every test image. 3 seeds; balanced accuracy and AUROC, mean and std.
Fashion-MNIST is used where its files are installed (Debian: dataset-fashion-mnist).

    python experiments/anomaly/run.py                 # about 15 minutes on 2 cores
    python experiments/anomaly/run.py --report-only   # re-render from the JSON

Writes experiments/results/anomaly.json and .md.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
from aae import SETTINGS, contaminated, evaluate, train_detector  # noqa: E402
from scaffold import StudyOptions, run_study  # noqa: E402

from torchawp.data import load_splits  # noqa: E402
from torchawp.errors import DataError  # noqa: E402
from torchawp.runtime import cpu_name  # noqa: E402

CONTAMINATION = (0.0, 0.05, 0.1, 0.2)
EPOCHS = {"digits": 100, "fashion-mnist": 20}
N_NORMAL = 1000  # normal training images at most


@dataclasses.dataclass
class Options(StudyOptions):
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # the normal class
    normal: int = 0
    # each one where its files are installed
    datasets: list[str] = dataclasses.field(default_factory=lambda: ["digits", "fashion-mnist"])


def mean_std(values) -> str:
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {s:.3f}"


def render(data: dict) -> str:
    lines = [f"Normal class {data['normal']}, seeds {', '.join(map(str, data['seeds']))}; "
             f"balanced accuracy / AUROC, mean ± std over seeds. Measured on {data['cpu']}, "
             f"{data['minutes']:.0f} min.", ""]
    for dataset in data["datasets"]:
        header = " | ".join(f"{100 * c:g}%" for c in data["contamination"])
        lines += [f"{dataset} ({data['train_sizes'][dataset]} normal training images, the "
                  f"anomalies added to them):", "",
                  f"| detector | {header} |", "|---" * (1 + len(data["contamination"])) + "|"]
        for metric in ("balanced_accuracy", "auroc"):
            for setting in data["settings"]:
                cells = [mean_std([r[metric] for r in data["runs"] if r["dataset"] == dataset
                                   and r["setting"] == setting and r["contamination"] == c])
                         for c in data["contamination"]]
                name = setting + (" (AUROC)" if metric == "auroc" else " (bal. acc.)")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        shares = []
        for c in data["contamination"]:
            rs = [r for r in data["runs"] if r["dataset"] == dataset and r["dropped"]
                  and r["contamination"] == c]
            if rs:
                dropped = sum(r["dropped_anomalies"] for r in rs) / sum(r["dropped"] for r in rs)
                shares.append(f"{100 * c:g}%: {100 * dropped:.0f}%")
        lines += ["", "Anomalies among the images ITSR dropped, by contamination: "
                  + ", ".join(shares) + ".", ""]
    return "\n".join(lines)


def measure(opts: Options, runs: Path) -> dict:
    torch.set_num_threads(2)
    start, measured, sizes, datasets = time.perf_counter(), [], {}, []
    for dataset in opts.datasets:
        try:
            splits = load_splits(dataset, val_size=0)
        except DataError as exc:
            print(f"skipping {dataset}: {exc}", flush=True)
            continue
        datasets.append(dataset)
        x, y = splits.train.tensors(0, None)
        xt, yt = splits.test.tensors(0, None)
        sizes[dataset] = min(N_NORMAL, int((y == opts.normal).sum()))
        for c in CONTAMINATION:
            for seed in opts.seeds:
                images, anomaly = contaminated(x, y, opts.normal, c, seed, n_normal=N_NORMAL)
                for setting in SETTINGS:
                    model, keep = train_detector(images, setting, seed, EPOCHS[dataset])
                    r = evaluate(model, images, xt, yt != opts.normal)
                    measured.append({"dataset": dataset, "contamination": c, "seed": seed,
                                     "setting": setting.name, **r,
                                     "dropped": int((~keep).sum()),
                                     "dropped_anomalies": int((~keep & anomaly).sum())})
                    print(dataset, c, seed, setting.name, r, flush=True)
    return {"cpu": cpu_name(), "minutes": (time.perf_counter() - start) / 60,
            "normal": opts.normal, "seeds": opts.seeds, "datasets": datasets,
            "contamination": list(CONTAMINATION), "settings": [s.name for s in SETTINGS],
            "train_sizes": sizes, "runs": measured}


if __name__ == "__main__":
    raise SystemExit(run_study("anomaly", __doc__, measure, render, Options))
