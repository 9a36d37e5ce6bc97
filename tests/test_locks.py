"""One process per run directory (and per evaluation state): a second one is refused with one
line, the kernel's lock vanishes with its process, and a refused run leaves nothing behind."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchawp.io.paths import exclusive_lock

from .helpers import copy_run
from .test_cli import TINY, run_cli

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ one process per directory
HOLD = textwrap.dedent("""
    import sys, time
    from torchawp.io.paths import exclusive_lock
    with exclusive_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


@pytest.fixture
def held_by_another_process(tmp_path):
    procs = []

    def hold(directory: Path):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_training_process_in_a_locked_run_directory_is_refused(tmp_path, capsys,
                                                                          held_by_another_process):
    run = tmp_path / "run"
    held_by_another_process(run)
    code, _, err = run_cli(capsys, "train", "--out-dir", str(run), *TINY)
    assert code == 2 and err.count("\n") == 1
    assert "is in use by another torchawp process" in err
    assert not (run / "config.yaml").exists()  # nothing was written


def test_a_second_evaluation_of_the_same_run_is_refused(tmp_path, capsys, two_epochs,
                                                        held_by_another_process):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    held_by_another_process(run / "eval_state")
    code, _, err = run_cli(capsys, "eval", str(run), "--attacks", "pgd2", "--n-examples", "20",
                           "--no-checks")
    assert code == 2 and "evaluation state" in err and "in use" in err
    assert not (run / "eval.json").exists()


def test_the_lock_is_reentrant_and_released(tmp_path):
    (tmp_path / "d").mkdir()  # a directory the user made is kept, empty or not
    with exclusive_lock(tmp_path / "d"):
        with exclusive_lock(tmp_path / "d"):
            pass
        probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"),
                                str(tmp_path / "d")], cwd=ROOT, capture_output=True, text=True)
        assert probe.returncode != 0 and "RunDirInUse" in probe.stderr
    probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"),
                            str(tmp_path / "d")], cwd=ROOT, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert list((tmp_path / "d").iterdir()) == []  # no lock file left behind


@pytest.mark.parametrize("args", [
    ["--method", "rst", "--data.train_subset", "1003"],  # refused after the lock, in the labeller
    ["--dataset", "cifar10", "--data-dir", "/nonexistent", "--epochs", "1"],
])
def test_a_refused_run_leaves_no_empty_directory(tmp_path, capsys, args):
    code, _, err = run_cli(capsys, "train", "--out-dir", str(tmp_path / "run"), *args)
    assert code == 2 and err.startswith("torchawp: error: ")
    assert not (tmp_path / "run").exists()
    with exclusive_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "file").write_text("x")
    assert (tmp_path / "kept" / "file").exists()  # only an empty directory is removed
