"""What a newcomer waits for: the main job (`torchawp train`, the README's first command once
installed), the same recipe without AWP (`--method at`, the comparison the README draws) and the
test suite (`python -m pytest -q`), each timed in its own process, one after the other (never
side by side on a small CPU), with what they printed.

    python benchmarks/first_run.py                # about 5 minutes on 2 cores
    python benchmarks/first_run.py --report-only  # re-render from the JSON

Writes benchmarks/results/first_run.json (keeping its "elsewhere": measurements on other CPUs);
docs/speed.md shows its table and the README its sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torchawp.runtime import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "first_run.json"


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def table_rows(out: str) -> dict:
    """The best and last rows of the final table a training run printed."""
    rows = {}
    for which in ("best", "last"):
        m = re.search(rf"^{which} \(epoch (\d+)\)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+([\d.]+)",
                      out, re.M)
        rows[which] = dict(zip(("epoch", "clean", "pgd", "gap"), m.groups()))
    return rows


def _result(row: dict) -> str:
    best, last = row["best"], row["last"]
    return (f"best (epoch {best['epoch']}) {best['clean']} / {best['pgd']}, gap {best['gap']}; "
            f"last (epoch {last['epoch']}) {last['clean']} / {last['pgd']}, gap {last['gap']}")


def render(data: dict) -> str:
    """docs/speed.md's table: this script's measurement, then any kept from elsewhere."""
    lines = [f"Measured on {data['cpu']} ({data['cores']} cores), one after the other:", "",
             "| what | seconds | result |", "|---|---|---|",
             f"| main job, `torchawp train` | {data['main_job']['seconds']:.0f} | "
             f"{_result(data['main_job'])} |",
             f"| the same recipe without AWP, `torchawp train --method at` | "
             f"{data['at_job']['seconds']:.0f} | {_result(data['at_job'])} |",
             f"| test suite, `python -m pytest -q` | {data['suite']['seconds']:.0f} | "
             f"{data['suite']['summary']} |", ""]
    for row in data.get("elsewhere", []):
        lines += [f"On {row['cpu']}, {row['how']}: the main job took {row['seconds']} s, "
                  f"{_result(row)}.", ""]
    return "\n".join(lines)


def readme(data: dict) -> str:
    """The README's sentence on where and how fast the main job ran."""
    minutes, seconds = divmod(round(data["suite"]["seconds"]), 60)
    text = (f"That is {data['cpu']} ({data['cores']} cores), where the command takes "
            f"{data['main_job']['seconds']:.0f} s and the test suite {minutes} min {seconds} s.")
    for row in data.get("elsewhere", []):
        text += (f" On {row['cpu']} it took {row['seconds']} s (an earlier version, timed by "
                 f"hand) and printed {_result(row)}.")
    rows = [row[which] for row in [data["main_job"], *data.get("elsewhere", [])]
            for which in ("best", "last")]
    span = {k: (min(float(r[k]) for r in rows), max(float(r[k]) for r in rows))
            for k in ("clean", "pgd", "gap")}
    return text + (f" Without AWP (`--method at`) the same recipe ends at "
                   f"{_result(data['at_job'])}. A run is bit-reproducible on one machine, but "
                   f"another CPU picks other float kernels; across CPUs, then: about "
                   f"{span['clean'][0]:.1f}-{span['clean'][1]:.1f}% clean, "
                   f"{span['pgd'][0]:.0f}-{span['pgd'][1]:.0f}% PGD-20, a gap of "
                   f"{span['gap'][0]:.0f}-{span['gap'][1]:.0f} points with AWP.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        jobs = {}
        for key, extra in (("main_job", []), ("at_job", ["--method", "at"])):
            with tempfile.TemporaryDirectory(prefix="first_run_") as tmp:
                seconds, out = timed([sys.executable, "-m", "torchawp.cli", "train",
                                      "--no-progress", *extra], Path(tmp))
            jobs[key] = {"seconds": seconds, **table_rows(out)}
        suite_seconds, suite_out = timed([sys.executable, "-m", "pytest", "-q", "-p",
                                          "no:cacheprovider"], ROOT)
        summary = suite_out.strip().splitlines()[-1].strip("= ")
        data = {"cpu": cpu_name(), "cores": os.cpu_count(),
                **jobs,
                "suite": {"seconds": suite_seconds, "summary": re.sub(r" in [\d.]+s.*", "",
                                                                      summary)},
                "elsewhere": json.loads(RESULTS.read_text()).get("elsewhere", [])
                if RESULTS.exists() else []}
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    data = json.loads(RESULTS.read_text())
    print(render(data))
    print(readme(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
