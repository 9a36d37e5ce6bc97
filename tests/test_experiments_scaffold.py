"""The scaffold every study shares: tyro options, results written with their rendering,
re-rendering without training, and an interrupted study that resumes only its own runs."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scaffold(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("scaffold", ROOT / "experiments/scaffold.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "scaffold", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def test_a_study_writes_its_results_and_their_table_and_rerenders_them(scaffold, tmp_path,
                                                                         capsys):
    calls = []

    def measure(opts, scratch):
        calls.append(scratch)
        assert scratch.is_dir()
        return {"value": 3}

    def render(data):
        return f"| value |\n|---|\n| {data['value']} |\n"

    assert scaffold.run_study("toy", "A toy study.", measure, render, argv=[]) == 0
    assert json.loads((tmp_path / "toy.json").read_text()) == {"value": 3}
    assert (tmp_path / "toy.md").read_text() == render({"value": 3})
    assert not calls[0].exists()  # the scratch directory is gone
    (tmp_path / "toy.json").write_text('{"value": 4}')
    scaffold.run_study("toy", "A toy study.", measure, render, argv=["--report-only"])
    assert len(calls) == 1 and "| 4 |" in (tmp_path / "toy.md").read_text()
    assert "| 4 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # options are tyro's, spelled with hyphens
        scaffold.run_study("toy", "A toy study.", measure, render, argv=["--report_onli"])
    assert exit_.value.code == 2


def test_an_interrupted_study_resumes_its_own_runs_only(scaffold, tmp_path):
    ran = []

    def run(key):
        return lambda: ran.append(key) or {"key": key}

    first = scaffold.Partial("s", {"seeds": [0, 1]})
    first.run("a", run("a"))
    # interrupted here; the same settings skip the finished run
    again = scaffold.Partial("s", {"seeds": [0, 1]})
    assert again.run("a", run("a")) == {"key": "a"} and ran == ["a"]
    again.run("b", run("b"))
    assert ran == ["a", "b"]
    # other settings start afresh
    other = scaffold.Partial("s", {"seeds": [0]})
    other.run("a", run("a"))
    assert ran == ["a", "b", "a"]
    other.done()
    assert not (tmp_path / ".s.partial.json").exists()


def test_kept_runs_their_files_and_results_named_by_the_settings(scaffold, tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Options(scaffold.StudyOptions):
        budget: int = 500

    def measure(opts, runs):
        (runs / "run.txt").write_text(f"trained on {opts.budget}")
        return {"budget": opts.budget}

    def from_runs(opts, data, runs, written):  # drawn from the runs, while they exist
        written.text("from_runs.txt", (runs / "run.txt").read_text())

    def name(opts):
        return "toy" if opts.budget == 500 else f"toy_pilots/b{opts.budget}"

    runs = tmp_path / "runs"
    render = lambda data: f"{data['budget']}\n"  # noqa: E731
    scaffold.run_study(name, "A toy.", measure, render, Options, from_runs=from_runs,
                       argv=["--runs-dir", str(runs), "--budget", "7"])
    assert json.loads((tmp_path / "toy_pilots/b7.json").read_text()) == {"budget": 7}
    assert (tmp_path / "toy_pilots/from_runs.txt").read_text() == "trained on 7"
    assert (runs / "run.txt").is_file() and not (tmp_path / "toy.json").exists()
    scaffold.run_study(name, "A toy.", measure, render, Options, from_runs=from_runs,
                       argv=["--report-only", "--budget", "7"])  # the runs are not needed
    assert (tmp_path / "toy_pilots/b7.md").read_text() == "7\n"
