"""The one way an analysis writes its outputs (``eval``, ``landscape``, ``flatness``,
``backdoor``, ``transfer``, ``concepts``, and the studies in ``experiments/``): into a folder
made if missing (a file in the way is one line), locked while written so that two runs cannot
interleave, every file whole or not at all (written beside, then renamed)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .checkpoint import atomic_write
from .paths import exclusive_lock


class Report:
    """The files of one analysis in ``folder``, written while :func:`report` holds the lock."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.written: list[Path] = []

    def file(self, name: str, write: Callable[[Path], None]) -> Path:
        """``write(path)`` writes the file (a figure's ``savefig``, a tensor store ...)."""
        path = self.folder / name
        atomic_write(path, write)
        self.written.append(path)
        return path

    def text(self, name: str, text: str) -> Path:
        return self.file(name, lambda tmp: tmp.write_text(text))

    def json(self, name: str, data: Any) -> Path:
        return self.text(name, json.dumps(data, indent=2) + "\n")

    def csv(self, name: str, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return self.text(name, buffer.getvalue())


@contextlib.contextmanager
def report(folder, what: str = "output directory") -> Iterator[Report]:
    """``with report(out_dir, "flatness directory") as r: r.json("flatness.json", ...)``."""
    with exclusive_lock(Path(folder), what):  # made if missing; removed again if left empty
        yield Report(Path(folder))
