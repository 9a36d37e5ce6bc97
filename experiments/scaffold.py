"""What every study in ``experiments/`` shares: options read by tyro as the package's commands
read theirs (``--report-only`` and the study's own), a scratch directory for its runs, the
results written by the package's report writer (``torchawp.io.report``: the results folder
locked, every file whole) as JSON with the Markdown table rendered from them beside it (and
any figure), and the re-rendering of the committed results without training anything.

A study is a module with ``measure(options, scratch) -> dict`` and ``render(data) -> str``
that ends with ``raise SystemExit(run_study("NAME", __doc__, measure, render, Options))``;
``tests/test_docs_numbers.py`` checks that the docs hold ``render`` of the committed JSON.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import tyro

from torchawp.io.report import Report, report

RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass
class StudyOptions:
    """Options every study takes."""

    # re-render the committed results (experiments/results/NAME.json); train nothing
    report_only: bool = False


def run_study(name: str, doc: str, measure: Callable[[StudyOptions, Path], dict],
              render: Callable[[dict], str], options: type = StudyOptions,
              argv: Optional[Sequence[str]] = None,
              figures: Optional[Callable[[dict, Report], None]] = None) -> int:
    """Read the options, run ``measure`` in a scratch directory (removed afterwards), write
    ``RESULTS/NAME.json`` and ``RESULTS/NAME.md`` (and ``figures(data, report)``'s files),
    print the table."""
    opts = tyro.cli(options, args=argv, description=doc)
    path = RESULTS / f"{name}.json"
    if not opts.report_only:
        with tempfile.TemporaryDirectory(prefix=f"{name}_") as scratch:
            data = measure(opts, Path(scratch))
        with report(RESULTS, "results directory") as written:
            written.text(path.name, json.dumps(data, indent=1) + "\n")
    data = json.loads(path.read_text())
    table = render(data)
    with report(RESULTS, "results directory") as written:
        written.text(f"{name}.md", table)
        if figures is not None:
            figures(data, written)
    print(table)
    return 0


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
