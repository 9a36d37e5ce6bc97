"""The measured tables in the docs are renderings of committed result files: a changed result
without a re-rendered page (or a hand-edited number) fails here."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(relative: str):
    """The script as a module, imported as its directory's scripts import each other (the
    studies' ``scaffold``, the benchmarks' ``common``)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[path.stem] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.mark.parametrize("script, results, page", [
    ("benchmarks/data_scale.py", "benchmarks/results/data_scale.json", "docs/scale.md"),
    ("benchmarks/first_run.py", "benchmarks/results/first_run.json", "docs/speed.md"),
    ("experiments/ema_study.py", "experiments/results/ema_study.json", "docs/scale.md"),
    ("experiments/fashion_mnist_recipe.py", "experiments/results/fashion_mnist_recipe.json",
     "docs/real-data.md"),
    ("experiments/robust_overfitting.py", "experiments/results/robust_overfitting.json",
     "docs/flatness.md"),
    ("experiments/flatness_correlation.py", "experiments/results/flatness_correlation.json",
     "docs/flatness.md"),
    ("experiments/approximate_ascent.py", "experiments/results/approximate_ascent.json",
     "docs/speed.md"),
    ("experiments/backdoor_study.py", "experiments/results/backdoor_study.json",
     "docs/related.md"),
    ("experiments/fashion_mnist_budget.py", "experiments/results/fashion_mnist_budget.json",
     "docs/real-data.md"),
    ("experiments/concepts_study.py", "experiments/results/concepts_study.json",
     "docs/related.md"),
    ("experiments/anomaly/run.py", "experiments/results/anomaly.json", "docs/related.md"),
    ("experiments/perturbation_study.py", "experiments/results/perturbation_study.json",
     "docs/perturbations.md"),
    ("benchmarks/perturbation_cost.py", "benchmarks/results/perturbation_cost.json",
     "docs/perturbations.md"),
    ("benchmarks/trainer_cost.py", "benchmarks/results/trainer_cost.json", "docs/trainers.md"),
    ("experiments/fashion_mnist_budget.py",
     "experiments/results/fashion_mnist_budget_pilots/b1000_w16_e40.json", "docs/real-data.md"),
    ("experiments/fashion_mnist_budget.py",
     "experiments/results/fashion_mnist_budget_pilots/b500_w32_e100.json", "docs/real-data.md"),
])
def test_the_docs_table_is_the_rendering_of_its_results_file(script, results, page):
    table = _script(script).render(json.loads((ROOT / results).read_text()))
    assert table.strip() in (ROOT / page).read_text()


def test_the_readme_says_what_the_first_run_measured():
    """The README's main-job table and its sentence on time and CPUs come from
    benchmarks/results/first_run.json."""
    first_run = _script("benchmarks/first_run.py")
    data = json.loads((ROOT / "benchmarks/results/first_run.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert " ".join(first_run.readme(data).split()) in " ".join(readme.split())
    for which in ("best", "last"):
        row = data["main_job"][which]
        line = next(line for line in readme.splitlines()
                    if line.startswith(f"{which} (epoch {row['epoch']})"))
        assert line.split()[3:5] == [row["clean"], row["pgd"]] and line.split()[-1] == row["gap"]


@pytest.mark.parametrize("written, rows", [("transfer_regional.md", 5),
                                           ("backdoor_default.md", 3)])
def test_the_table_is_the_one_the_command_wrote(written, rows):
    text = (ROOT / "experiments/results" / written).read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    assert table.count("\n") >= rows and table in (ROOT / "docs/related.md").read_text()


def test_the_readmes_range_holds_every_cpus_table():
    """The README's cross-CPU range contains every best and last row measured on every CPU
    (AMD EPYC's 97.14 clean was once outside a range drawn from Intel alone)."""
    first_run = _script("benchmarks/first_run.py")
    data = json.loads((ROOT / "benchmarks/results/first_run.json").read_text())
    span = first_run.span(data)
    rows = [job[which] for job in [data["main_job"], *data["elsewhere"]]
            for which in ("best", "last")]
    assert len(rows) >= 4  # two CPUs at least
    for key, (low, high, _) in span.items():
        assert all(low <= float(r[key]) <= high for r in rows), key
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"{span['clean'][0]:.1f}-{span['clean'][1]:.1f}% clean" in text
