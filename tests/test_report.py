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
