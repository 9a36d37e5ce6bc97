"""The one report writer of the analysis commands: a locked folder, whole files only."""

import json
import subprocess
import sys

import pytest

from torchawp.errors import ConfigError
from torchawp.io.report import report


def test_a_report_writes_whole_files_in_its_locked_folder(tmp_path):
    out = tmp_path / "a" / "b"
    with report(out, "--out-dir") as written:
        written.json("r.json", {"x": 1})
        written.csv("r.csv", ["a", "b"], [(1, 2)])
        other = subprocess.run(  # another process's writer is refused, in one line
            [sys.executable, "-c", "from torchawp.io.report import report\n"
             f"with report({str(out)!r}, '--out-dir'): pass"], capture_output=True, text=True)
        assert other.returncode != 0 and "RunDirInUse" in other.stderr
        assert "--out-dir" in other.stderr and "in use by another torchawp process" in other.stderr
        with pytest.raises(ZeroDivisionError):  # a writer that fails leaves nothing behind
            written.file("half.txt", lambda tmp: (tmp.write_text("half"), 1 / 0))
    assert json.loads((out / "r.json").read_text()) == {"x": 1}
    assert (out / "r.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in out.iterdir()) == ["r.csv", "r.json"]
    assert [p.name for p in written.written] == ["r.json", "r.csv"]


def test_a_file_in_the_way_is_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="f is a file"):
        with report(tmp_path / "f" / "out", "--out-dir"):
            pass


def test_eval_prints_what_it_measured_for_every_row_it_measured_and_not_for_a_copy():
    """A run whose last epoch was its best, but whose weight average changed after its best:
    ``last`` is a copy of ``best``, ``ema_last`` is measured, and its checks are said."""
    from torchawp.evaluation.report import summary

    def row(which):
        return {"which": which, "epoch": 3, "dataset": "digits", "n": 10,
                "threat_model": {"norm": "linf", "eps": 0.1}, "accuracy": {"pgd20": 0.5},
                "robust_acc": 0.5, "gap": 0.1, "attacks": ["pgd20"], "cascade": [],
                "checks": [{"status": "pass", "name": "steps", "detail": f"{which} fine"}]}

    text = summary("runs/r", [row(w) for w in ("best", "last", "ema_best", "ema_last")],
                   ["pgd20"], copied={"last"})
    assert "ema_last steps: ema_last fine" in text and "last steps: last fine" not in text
    assert "best steps: best fine" in text and "AutoAttack not run" in text
