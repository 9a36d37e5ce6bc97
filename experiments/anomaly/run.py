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

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from aae import SETTINGS, contaminated, evaluate, train_detector  # noqa: E402

from torchawp.data import load_splits  # noqa: E402
from torchawp.errors import DataError  # noqa: E402
from torchawp.runtime import cpu_name  # noqa: E402

RESULTS = Path(__file__).parents[1] / "results" / "anomaly.json"
CONTAMINATION = (0.0, 0.05, 0.1, 0.2)
EPOCHS = {"digits": 100, "fashion-mnist": 20}
N_NORMAL = 1000  # normal training images at most


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--normal", type=int, default=0, help="the normal class")
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if not args.report_only:
        torch.set_num_threads(2)
        start, runs, sizes, datasets = time.perf_counter(), [], {}, []
        for dataset in args.datasets:
            try:
                splits = load_splits(dataset, val_size=0)
            except DataError as exc:
                print(f"skipping {dataset}: {exc}", flush=True)
                continue
            datasets.append(dataset)
            x, y = splits.train.tensors(0, None)
            xt, yt = splits.test.tensors(0, None)
            sizes[dataset] = min(N_NORMAL, int((y == args.normal).sum()))
            for c in CONTAMINATION:
                for seed in args.seeds:
                    images, anomaly = contaminated(x, y, args.normal, c, seed,
                                                   n_normal=N_NORMAL)
                    for setting in SETTINGS:
                        model, keep = train_detector(images, setting, seed, EPOCHS[dataset])
                        r = evaluate(model, images, xt, yt != args.normal)
                        runs.append({"dataset": dataset, "contamination": c, "seed": seed,
                                     "setting": setting.name, **r,
                                     "dropped": int((~keep).sum()),
                                     "dropped_anomalies": int((~keep & anomaly).sum())})
                        print(dataset, c, seed, setting.name, r, flush=True)
        data = {"cpu": cpu_name(), "minutes": (time.perf_counter() - start) / 60,
                "normal": args.normal, "seeds": args.seeds, "datasets": datasets,
                "contamination": list(CONTAMINATION), "settings": [s.name for s in SETTINGS],
                "train_sizes": sizes, "runs": runs}
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
        RESULTS.with_suffix(".md").write_text(render(data))
    print(render(json.loads(RESULTS.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
