"""Robust concept vectors on digits: do Soni et al.'s two findings reproduce (A-CAV recalls more
held-out concept images; Gram-Schmidt random sets with averaged classifiers vary less over
random sets), and are the concept vectors of adversarially trained models more stable across
random sets than those of standard ones?

Standard, AT and AT-AWP models (the digits recipe, 3 training seeds each); at the output of the
second convolution stage (net.features.13, 256 features) two concepts, each scored on one
class: closed loops (classes:0,8) for class 6, and a stroke pattern (mask:top:0.6, images with
at least 60% of their ink in the top half) for class 7; 20 random sets of 100 images; plain
CAV, A-CAV (margin 0.1 of the mean activation norm), and both on Gram-Schmidt random sets
averaging 5 classifiers.

    python experiments/concepts_study.py                # about 15 minutes on 2 cores
    python experiments/concepts_study.py --report-only  # re-render from the JSON

Writes experiments/results/concepts_study.json, .md and .png.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Optional

import torch
from scaffold import StudyOptions, run_study

from torchawp.studies.concepts import Variant, concept_study
from torchawp.training.run import train
from torchawp.config.recipes import load_recipe
from torchawp.runtime import cpu_name
from torchawp.evaluation.opened import open_run

METHODS = ("standard", "at", "at-awp")
LAYER = "net.features.13"
CONCEPTS = (("classes:0,8", 6), ("mask:top:0.6", 7))
VARIANTS = (Variant("cav"), Variant("a-cav", eps=0.1),
            Variant("cav+gs", gram_schmidt=True, average=5),
            Variant("a-cav+gs", eps=0.1, gram_schmidt=True, average=5))


def trained(method: str, seed: int, out: Path) -> Path:
    run = out / f"concepts_{method}_s{seed}"
    cfg = load_recipe("digits")
    cfg.method, cfg.seed, cfg.progress, cfg.out_dir = method, seed, False, str(run)
    cfg.resume = (run / "config.yaml").is_file()  # reused only if it is the same run
    train(cfg)
    return run


def mean_std(values, scale=1.0, digits=2) -> str:
    values = [scale * v for v in values]
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {s:.{digits}f}"


def render(data: dict) -> str:
    """Per concept, method and variant, over the training seeds: the mean over random sets
    and the spread across random sets (their std), of TCAV score, recall and specificity."""
    lines = [f"Digits, layer `{data['layer']}`, {data['seeds']} random sets of 100 images per "
             f"model, training seeds {', '.join(map(str, data['training_seeds']))}; mean ± std "
             f"over training seeds. Measured on {data['cpu']}, {data['minutes']:.0f} min.", ""]
    for concept, target in data["concepts"]:
        lines += [f"Concept `{concept}`, class {target}:", "",
                  "| model | variant | TCAV score | TCAV spread over random sets | recall % | "
                  "recall spread | specificity % |", "|---" * 7 + "|"]
        for method in data["methods"]:
            for variant in [v["name"] for v in data["variants"]]:
                rs = [r["results"][variant] for r in data["runs"]
                      if r["method"] == method and r["concept"] == concept]
                col = lambda k, s, scale=1.0: mean_std([r[k][s] for r in rs], scale)  # noqa
                lines.append(f"| {method} | {variant} | {col('tcav', 'mean')} | "
                             f"{col('tcav', 'std')} | {col('recall', 'mean', 100)} | "
                             f"{col('recall', 'std', 100)} | {col('specificity', 'mean', 100)} |")
        lines.append("")
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = [v["name"] for v in data["variants"]]
    fig, axes = plt.subplots(1, len(data["concepts"]), figsize=(11, 3.8), squeeze=False)
    for ax, (concept, target) in zip(axes[0], data["concepts"]):
        width = 0.8 / len(data["methods"])
        for i, method in enumerate(data["methods"]):
            spread = [statistics.mean(r["results"][v]["tcav"]["std"] for r in data["runs"]
                                      if r["method"] == method and r["concept"] == concept)
                      for v in variants]
            ax.bar([j + i * width for j in range(len(variants))], spread, width, label=method)
        ax.set_xticks([j + width for j in range(len(variants))], variants)
        ax.set_title(f"{concept} -> class {target}")
        ax.set_ylabel("TCAV score std over random sets")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclasses.dataclass
class Options(StudyOptions):
    """The study's settings."""

    # training seeds
    seeds: tuple[int, ...] = (0, 1, 2)
    # random sets per concept vector
    random_sets: int = 20
    # where the trained runs go (finished ones are reused); None: a scratch directory
    out_dir: Optional[str] = None


def measure(opts: Options, scratch: Path) -> dict:
    torch.set_num_threads(2)
    start, runs = time.perf_counter(), []
    for method in METHODS:
        for seed in opts.seeds:
            run = trained(method, seed, Path(opts.out_dir) if opts.out_dir else scratch)
            model, splits, _ = open_run(run, "last", "cpu")
            for concept, target in CONCEPTS:
                study = concept_study(model, splits, LAYER, concept, target, VARIANTS,
                                      seeds=opts.random_sets)
                runs.append({"method": method, "seed": seed, "concept": concept,
                             "results": {r["variant"]: r for r in study["results"]},
                             "per_seed": study["per_seed"]})
                print(method, seed, concept, {v: round(r["tcav"]["std"], 3) for v, r in
                                              runs[-1]["results"].items()}, flush=True)
    return {"cpu": cpu_name(), "minutes": (time.perf_counter() - start) / 60,
            "layer": LAYER, "seeds": opts.random_sets, "training_seeds": list(opts.seeds),
            "methods": list(METHODS), "concepts": [list(c) for c in CONCEPTS],
            "variants": [vars(v) for v in VARIANTS], "runs": runs}


def figures(data: dict, written) -> None:
    written.file("concepts_study.png", lambda tmp: plot(data, tmp))


if __name__ == "__main__":
    raise SystemExit(run_study("concepts_study", __doc__, measure, render, Options,
                               figures=figures))
