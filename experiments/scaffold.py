"""What every study in ``experiments/`` shares: options read by tyro as the package's commands
read theirs (``--report-only`` and the study's own), a scratch directory for its runs, the
results written by the package's report writer (``torchawp.io.report``: the results folder
locked, every file whole) as JSON with the Markdown table rendered from them beside it (and
any figure), and the re-rendering of the committed results without training anything.

A study is a module with ``measure(options, runs) -> dict`` and ``render(data) -> str``
that ends with ``raise SystemExit(run_study("NAME", __doc__, measure, render, Options))``;
``tests/test_docs_numbers.py`` checks that the docs hold ``render`` of the committed JSON.
Figures drawn from the results are re-drawn by ``--report-only`` (``figures``); those drawn from
the runs themselves (a run's curves, a landscape of its weights) only when the study measures
(``from_runs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import tyro

from torchawp.io.report import Report, report

RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass
class StudyOptions:
    """Options every study takes."""

    # re-render the committed results (experiments/results/NAME.json); train nothing
    report_only: bool = False
    # keep the study's runs in this folder, and continue them when the study runs again;
    # None: a scratch folder, removed afterwards
    runs_dir: Optional[str] = None


def run_study(name: Union[str, Callable[[StudyOptions], str]], doc: str,
              measure: Callable[[StudyOptions, Path], dict], render: Callable[[dict], str],
              options: type = StudyOptions, argv: Optional[Sequence[str]] = None,
              figures: Optional[Callable[[dict, Report], None]] = None,
              from_runs: Optional[Callable[[StudyOptions, dict, Path, Report], None]] = None
              ) -> int:
    """Read the options, run ``measure`` in the runs folder, write ``RESULTS/NAME.json`` (a
    ``name`` of the options: results of other settings go elsewhere) with ``from_runs``'s
    files, then ``RESULTS/NAME.md`` and ``figures(data, report)``'s files, and print the
    table."""
    opts = tyro.cli(options, args=argv, description=doc)
    path = RESULTS / f"{name(opts) if callable(name) else name}.json"
    if not opts.report_only:
        with _runs(opts, path.stem) as runs:
            data = measure(opts, runs)
            with report(path.parent, "results directory") as written:
                written.text(path.name, json.dumps(data, indent=1) + "\n")
                if from_runs is not None:
                    from_runs(opts, data, runs, written)
    data = json.loads(path.read_text())
    table = render(data)
    with report(path.parent, "results directory") as written:
        written.text(f"{path.stem}.md", table)
        if figures is not None:
            figures(data, written)
    print(table)
    return 0


def _runs(opts: StudyOptions, stem: str):
    """The folder a study's runs go in: ``--runs-dir``, or a scratch one removed afterwards."""
    if opts.runs_dir is not None:
        Path(opts.runs_dir).mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(Path(opts.runs_dir))
    return _scratch(stem)


@contextlib.contextmanager
def _scratch(stem: str):
    with tempfile.TemporaryDirectory(prefix=f"{stem}_") as scratch:
        yield Path(scratch)


class Partial:
    """The runs an interrupted study already measured, keyed by run and by the study's
    settings: a rerun with the same settings skips them, other settings start afresh. Kept in
    ``RESULTS/.NAME.partial.json`` until :meth:`done`."""

    def __init__(self, name: str, settings: dict):
        self.path, self.settings = RESULTS / f".{name}.partial.json", settings
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.runs = saved.get("runs", {}) if saved.get("settings") == settings else {}

    def run(self, key: str, measure: Callable[[], dict]) -> dict:
        if key not in self.runs:
            self.runs[key] = measure()
            with report(self.path.parent, "results directory") as written:
                written.text(self.path.name,
                             json.dumps({"settings": self.settings, "runs": self.runs}))
        return self.runs[key]

    def done(self) -> None:
        self.path.unlink(missing_ok=True)
