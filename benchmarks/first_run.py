"""What a newcomer waits for: the main job (`torchawp train`, the README's first command once
installed), the same with the x86 kernels pinned to AVX2 (the table every x86 CPU prints), the
same recipe without AWP (`--method at`, the comparison the README draws) and the test suite
(`python -m pytest -q`), each timed in its own process, one after the other (never side by side
on a small CPU), with what they printed.

    python benchmarks/first_run.py                # about 5 minutes on 2 cores
    python benchmarks/first_run.py --report-only  # re-render from the JSON

Writes benchmarks/results/first_run.json (keeping its "elsewhere": the same measurements on other
CPUs); docs/speed.md shows its table and the README its paragraph, whose range of numbers is
computed from every CPU's rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from torchawp.runtime import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "first_run.json"


def timed(args: list[str], cwd: Path, env: Optional[dict] = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
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


# x86 kernels pinned to AVX2 (ATen's dispatch, oneDNN, MKL): the same float code on any x86 CPU
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
PINNED_TEXT = " ".join(f"{k}={v}" for k, v in PINNED.items())


def _result(row: dict) -> str:
    best, last = row["best"], row["last"]
    return (f"best (epoch {best['epoch']}) {best['clean']} / {best['pgd']}, gap {best['gap']}; "
            f"last (epoch {last['epoch']}) {last['clean']} / {last['pgd']}, gap {last['gap']}")


def _same(a: dict, b: dict) -> bool:
    return all(a[w] == b[w] for w in ("best", "last"))


def render(data: dict) -> str:
    """docs/speed.md's table: this script's measurement, then the rows kept from other CPUs."""
    lines = [f"Measured on {data['cpu']} ({data['cores']} cores), one after the other:", "",
             "| what | seconds | result |", "|---|---|---|",
             f"| main job, `torchawp train` | {data['main_job']['seconds']:.0f} | "
             f"{_result(data['main_job'])} |"]
    if "pinned_job" in data:
        lines.append(f"| the same with the kernels pinned to AVX2 (`{PINNED_TEXT}`) | "
                     f"{data['pinned_job']['seconds']:.0f} | {_result(data['pinned_job'])} |")
    lines += [f"| the same recipe without AWP, `torchawp train --method at` | "
              f"{data['at_job']['seconds']:.0f} | {_result(data['at_job'])} |",
              f"| test suite, `python -m pytest -q` | {data['suite']['seconds']:.0f} | "
              f"{data['suite']['summary']} |", ""]
    for row in data.get("elsewhere", []):
        lines += [f"On {row['cpu']}, {row['how']}: the main job took {row['seconds']} s, "
                  f"{_result(row)}."]
        if "pinned" in row:
            lines += [f"With the kernels pinned: {row['pinned']['seconds']} s, "
                      f"{_result(row['pinned'])}."]
        lines.append("")
    return "\n".join(lines)


def span(data: dict) -> dict:
    """Lowest and highest clean, PGD-20 and gap over the best and last rows of every CPU's
    main job (default kernels), widened outwards to the shown precision so that every measured
    number lies inside the printed range."""
    rows = [row[which] for row in [data["main_job"], *data.get("elsewhere", [])]
            for which in ("best", "last")]
    digits = {"clean": 1, "pgd": 0, "gap": 0}
    out = {}
    for key, d in digits.items():
        values = [float(r[key]) for r in rows]
        out[key] = (math.floor(min(values) * 10 ** d) / 10 ** d,
                    math.ceil(max(values) * 10 ** d) / 10 ** d, d)
    return out


def readme(data: dict) -> str:
    """The README's paragraph on where and how fast the main job ran, and what other CPUs
    print."""
    minutes, seconds = divmod(round(data["suite"]["seconds"]), 60)
    text = (f"That is {data['cpu']} ({data['cores']} cores), where the command takes "
            f"{data['main_job']['seconds']:.0f} s and the test suite {minutes} min {seconds} s.")
    for row in data.get("elsewhere", []):
        text += f" On {row['cpu']} it took {row['seconds']} s and printed {_result(row)}."
    text += (f" Without AWP (`--method at`) the same recipe ends at "
             f"{_result(data['at_job'])}. A run is bit-reproducible on one machine, but "
             f"another CPU picks other float kernels; across the CPUs measured, then: "
             + ", ".join(f"{lo:.{d}f}-{hi:.{d}f}{unit}" for (lo, hi, d), unit in zip(
                 span(data).values(), ["% clean", "% PGD-20", " points of gap with AWP"]))
             + ".")
    pinned = [data.get("pinned_job")] + [row.get("pinned") for row in data.get("elsewhere", [])]
    if "pinned_job" not in data or len(pinned) < 2 or None in pinned:
        return text
    ratio = data["pinned_job"]["seconds"] / data["main_job"]["seconds"]
    if all(_same(p, pinned[0]) for p in pinned):
        return text + (f" With the kernels pinned to AVX2 (`{PINNED_TEXT} torchawp train`) "
                       f"every CPU measured prints the same table, "
                       f"{_result(data['pinned_job'])}, at {ratio:.2f}x the time here; it is "
                       f"not the default for that cost.")
    return text + (" Pinning the x86 kernels to AVX2 does not make these CPUs agree (best "
                   + " against ".join(f"{p['best']['clean']} / {p['best']['pgd']}"
                                      for p in pinned)
                   + f", at {ratio:.2f}x the time here), so this page gives the range measured "
                     f"on each CPU rather than one table for all.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        jobs = {}
        for key, extra, env in (("main_job", [], {}), ("pinned_job", [], PINNED),
                                ("at_job", ["--method", "at"], {})):
            with tempfile.TemporaryDirectory(prefix="first_run_") as tmp:
                seconds, out = timed([sys.executable, "-m", "torchawp.cli", "train",
                                      "--no-progress", *extra], Path(tmp), env)
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
