"""Every way torchawp could print a number that is not what was asked for, with exit status 0:
stale evaluation caches, two processes in one run directory, resumes that change the
experiment, AWP that never switches on, bit-flipped checkpoints, and numbers that disagree
between training and evaluation."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

import torchawp
from torchawp.checkpoint import load_state, read_weights
from torchawp.cli import main
from torchawp.errors import CheckpointError, ConfigError, RunDirInUse, TrainingInterrupted
from torchawp.suite import evaluate_checkpoint
from torchawp.rundir import exclusive_lock
from torchawp.train import Trainer

from .helpers import tiny_config
from .test_cli import TINY, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run, copied by the tests that damage it."""
    return torchawp.train(tiny_config(tmp_path_factory.mktemp("two") / "run", epochs=2))


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def flip_bytes(path: Path, start_fraction: float = 0.6, count: int = 1000) -> None:
    """XOR ``count`` bytes in the middle of the file (inside the tensor data), same length."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * start_fraction)
    for i in range(start, min(start + count, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ 1. the evaluation cache
def test_cached_evaluation_is_not_reused_for_another_checkpoint(tmp_path, two_epochs):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    state = tmp_path / "state"
    first = evaluate_checkpoint(run, "last", ["pgd5"], 80, "cpu", checks=False, state_dir=state)
    # another checkpoint lands under the same name (a resumed run, a swapped file)
    torchawp.train(tiny_config(run, epochs=3, resume=True))
    with pytest.warns(UserWarning, match="another checkpoint or other test data; discarded"):
        second = evaluate_checkpoint(run, "last", ["pgd5"], 80, "cpu", checks=False,
                                     state_dir=state)
    fresh = evaluate_checkpoint(run, "last", ["pgd5"], 80, "cpu", checks=False)
    assert second["accuracy"] == fresh["accuracy"]
    assert second["accuracy"] != first["accuracy"]  # the cache would have served these
    assert second["weights_sha256"] != first["weights_sha256"]


def test_cached_evaluation_is_reused_for_the_same_checkpoint_and_data(tmp_path, two_epochs):
    state = tmp_path / "state"
    a = evaluate_checkpoint(two_epochs.run_dir, "last", ["pgd5"], 60, "cpu", checks=False,
                            state_dir=state)
    stamps = {p.name: p.stat().st_mtime_ns for p in state.glob("*.pt")}
    b = evaluate_checkpoint(two_epochs.run_dir, "last", ["pgd5"], 60, "cpu", checks=False,
                            state_dir=state)
    assert a["accuracy"] == b["accuracy"]
    assert stamps == {p.name: p.stat().st_mtime_ns for p in state.glob("*.pt")}  # not redone


# ------------------------------------------------------------------ 2. one process per directory
HOLD = textwrap.dedent("""
    import sys, time
    from torchawp.rundir import exclusive_lock
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
    ["--data.name", "cifar10", "--data.data_dir", "/nonexistent", "--epochs", "1"],
])
def test_a_refused_run_leaves_no_empty_directory(tmp_path, capsys, args):
    code, _, err = run_cli(capsys, "train", "--out-dir", str(tmp_path / "run"), *args)
    assert code == 2 and err.startswith("torchawp: error: ")
    assert not (tmp_path / "run").exists()
    with exclusive_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "file").write_text("x")
    assert (tmp_path / "kept" / "file").exists()  # only an empty directory is removed


# ------------------------------------------------------------------ 3-4. resume as configured
@pytest.fixture
def cli_run(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out-dir", str(run), *TINY)
    assert code == 0, err
    return run


def test_resume_takes_the_runs_own_config(cli_run, capsys):
    code, out, err = run_cli(capsys, "train", "--resume", str(cli_run))
    assert code == 0, err
    saved = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["model_args"]["width"] == 8  # not the recipe's 30
    rows = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert "last (epoch 2)" in out


def test_resume_may_extend_the_run_and_says_so(cli_run, capsys):
    code, out, err = run_cli(capsys, "train", "--resume", str(cli_run), "--epochs", "3")
    assert code == 0, err
    assert "extending the run from 2 to 3 epochs" in err
    assert yaml.safe_load((cli_run / "config.yaml").read_text())["epochs"] == 3
    assert "last (epoch 3)" in out


@pytest.mark.parametrize("args,message", [
    (["--epochs", "1"], "epochs 1 is not beyond the 2 epochs this run has done"),
    (["--attack.eps", "0.1"], "attack.eps differs from the run's config.yaml (0.2 there, 0.1 "
                              "now)"),
    (["--method", "at"], "method differs"),
    (["--config", "digits"], "drop --config"),
])
def test_resume_that_would_change_the_experiment_is_refused(cli_run, capsys, args, message):
    before = {p.name: p.read_bytes() for p in cli_run.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, "train", "--resume", str(cli_run), *args)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err
    assert before == {p.name: p.read_bytes() for p in cli_run.iterdir() if p.is_file()}


def test_bare_resume_flag_with_out_dir_and_resume_true_both_work(cli_run, capsys):
    assert run_cli(capsys, "train", "--out-dir", str(cli_run), "--resume")[0] == 0
    assert run_cli(capsys, "train", "--out-dir", str(cli_run), "--resume", "true")[0] == 0


def test_cosine_runs_cannot_be_extended(tmp_path):
    torchawp.train(tiny_config(tmp_path / "c", epochs=1, optim=dataclass_replace_optim("cosine")))
    with pytest.raises(ConfigError, match="cosine learning-rate schedule"):
        torchawp.train(tiny_config(tmp_path / "c", epochs=2, resume=True,
                                   optim=dataclass_replace_optim("cosine")))


def dataclass_replace_optim(schedule):
    from torchawp.config import OptimConfig

    return OptimConfig(lr=0.05, schedule=schedule, milestones=[])


@pytest.mark.parametrize("how", ["cli", "api"])
def test_resume_of_a_directory_without_a_run_is_refused(tmp_path, capsys, how):
    missing = tmp_path / "typo"
    if how == "cli":
        code, _, err = run_cli(capsys, "train", "--resume", str(missing))
        assert code == 2 and "holds no torchawp run" in err
    else:
        with pytest.raises(ConfigError, match="holds no torchawp run"):
            torchawp.train(tiny_config(missing, resume=True))
    assert not missing.exists()


# ------------------------------------------------------------------ 5. AWP that never switches on
@pytest.mark.parametrize("args,message", [
    (["--method", "trades-awp", "--epochs", "3"],
     "awp.warmup_epochs 10 leaves no epoch of a 3-epoch run with AWP, so trades-awp would train "
     "as trades"),
    (["--awp.gamma", "0"], "awp.gamma 0 turns AWP off, so at-awp would train as at"),
])
def test_awp_settings_that_make_awp_a_no_op_are_refused(capsys, args, message):
    code, _, err = run_cli(capsys, "train", *args, "--dry-run")
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("args,gamma,warmup", [
    (["--method", "trades-awp"], 0.01, 10),  # the digits recipe sets them for every method
    (["--config", "cifar10_prn18_trades_awp"], 0.005, 9),  # the script counts epochs from 1
    (["--config", "cifar10_prn18_at_awp"], 0.01, 0),
    (["--data.name", "cifar10", "--method", "mart-awp"], 0.005, 10),  # the method's defaults
])
def test_dry_run_shows_the_awp_settings_that_will_run(capsys, args, gamma, warmup):
    code, out, _ = run_cli(capsys, "train", *args, "--dry-run")
    cfg = yaml.safe_load(out)
    assert code == 0 and (cfg["awp"]["gamma"], cfg["awp"]["warmup_epochs"]) == (gamma, warmup)
    assert cfg["attack"]["bn_mode"] in ("train", "eval", "train-update")


def test_final_table_header_names_the_awp_settings(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--out-dir", str(tmp_path / "r"), *TINY,
                             "--awp.warmup_epochs", "1")
    assert code == 0, err
    assert "at-awp on digits (small_cnn), linf eps 0.2, AWP gamma 0.01 on epochs 2-2" in out


# ------------------------------------------------------------------ 6. checksums
def test_bit_flipped_weights_are_refused_by_eval(tmp_path, capsys, two_epochs):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    size = (run / "best.safetensors").stat().st_size
    flip_bytes(run / "best.safetensors")
    assert (run / "best.safetensors").stat().st_size == size
    with pytest.raises(CheckpointError, match="fails its SHA-256 check"):
        read_weights(run / "best.safetensors")
    code, _, err = run_cli(capsys, "eval", str(run), "--which", "best", "--attacks", "pgd2",
                           "--n-examples", "20", "--no-checks")
    assert code == 2 and err.count("\n") == 1 and "SHA-256" in err


def test_bit_flipped_training_state_is_detected(tmp_path, two_epochs):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    flip_bytes(run / "last.state.pt", 0.5, 200)
    with pytest.raises(CheckpointError):
        load_state(run / "last.state.pt")


def test_resume_falls_back_to_prev_when_last_is_bit_flipped(tmp_path, two_epochs):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    flip_bytes(run / "last.safetensors")
    with pytest.warns(UserWarning, match="SHA-256"):
        resumed = torchawp.train(tiny_config(run, epochs=3, resume=True))
    # prev.* held epoch 1: epochs 2 and 3 were trained again
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    reference = torchawp.train(tiny_config(tmp_path / "ref", epochs=3))
    a, _ = read_weights(resumed.run_dir / "last.safetensors")
    b, _ = read_weights(reference.run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ agreement and stops
def test_training_table_and_eval_give_the_same_numbers_for_the_same_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=1)
    cfg.eval.steps, cfg.eval.max_examples, cfg.eval.train_examples = 20, 120, 90
    run = torchawp.train(cfg)
    r = evaluate_checkpoint(run.run_dir, "last", ["pgd20"], 120, "cpu", checks=False)
    assert r["accuracy"]["pgd20"] == run.last["test_robust_acc"]
    assert r["accuracy"]["clean"] == run.last["test_clean_acc"]
    assert r["train_robust_acc"] == run.last["train_robust_acc"] and r["n_train"] == 90
    assert r["gap"] == pytest.approx(run.last["gap"], abs=1e-12)


def test_best_checkpoint_is_measured_on_train_and_test_even_between_curve_epochs(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=3)
    cfg.eval.curve_every = 3  # train/test only at epoch 3; val every epoch
    run = torchawp.train(cfg)
    assert "test_robust_acc" not in run.history[1] and "val_robust_acc" in run.history[1]
    best = run.best
    assert {"test_clean_acc", "test_robust_acc", "train_robust_acc", "gap"} <= set(best)
    assert best.get("evaluated_after_training", False) == (run.best_epoch != 3)
    r = evaluate_checkpoint(run.run_dir, "best", ["pgd3"], 150, "cpu", checks=False,
                            per_attack=True)
    assert r["accuracy"]["pgd3"] == best["test_robust_acc"]  # the protocol of torchawp eval


def test_a_stop_during_evaluation_saves_and_resumes_bit_identically(tmp_path):
    reference = torchawp.train(tiny_config(tmp_path / "ref", epochs=2))
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=2))
    attack = trainer.eval_attack.perturb

    def signal_in_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return attack(*args, **kwargs)

    trainer.eval_attack.perturb = signal_in_evaluation
    start = time.perf_counter()
    with pytest.raises(TrainingInterrupted,
                       match="Continue with: torchawp train --resume .*run$"):
        trainer.fit()
    _, meta = read_weights(tmp_path / "run" / "last.safetensors")
    assert (meta["epoch"], meta["step"]) == (0, trainer.steps_per_epoch)  # trained, not evaluated
    assert time.perf_counter() - start < 60
    resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=2, resume=True))
    a, _ = read_weights(resumed.run_dir / "last.safetensors")
    b, _ = read_weights(reference.run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[0]["test_robust_acc"] == reference.history[0]["test_robust_acc"]


def test_files_of_a_run_share_one_permission_mode(two_epochs):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in two_epochs.run_dir.iterdir()
             if p.is_file()}
    assert len(set(modes.values())) == 1, modes


def test_eval_report_has_no_links_that_break_inside_a_run_directory(tmp_path, capsys,
                                                                    two_epochs):
    run = copy_run(two_epochs.run_dir, tmp_path / "run")
    code, _, err = run_cli(capsys, "eval", str(run), "--which", "last", "--attacks", "pgd2",
                           "--n-examples", "30")
    assert code == 0, err
    md = (run / "eval.md").read_text()
    assert "](docs/" not in md and "| steps | " in md and "does not converge" in md
    assert "torchawp: last:" in err and "pgd2:" in err  # progress lines on stderr


def test_flatness_table_columns_stay_apart(tmp_path, capsys, two_epochs):
    long = copy_run(two_epochs.run_dir, tmp_path / ("a_run_directory_with_a_long_name" * 2))
    code, out, err = run_cli(capsys, "flatness", str(long), "--n-examples", "20", "--samples",
                             "1", "--passes", "1", "--restarts", "1", "--steps", "1", "--out",
                             str(tmp_path / "fl"))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("a_run"))
    assert len(row.split()) == 5  # checkpoint, split, loss, average, worst


# ------------------------------------------------------------------ error text and help
@pytest.mark.parametrize("args,message", [
    (["--optim.lr", "abc"], "optim.lr must be a number; got 'abc' on the command line"),
    (["--epochs", "1.5"], "epochs must be an integer; got '1.5' on the command line"),
    (["--optim.milestones", "3"], "optim.milestones must be a list of integers"),
    (["--eps", "0.1"], "unknown option --eps; did you mean --attack.eps?"),
    (["--batch-size", "0"], "did you mean --data.batch_size?"),
    (["--resume"], "--resume needs the run to continue"),
])
def test_parser_errors_are_complete_sentences(capsys, args, message):
    code, _, err = run_cli(capsys, "train", *args, "--dry-run")
    assert code == 2 and err.count("\n") == 1 and message in err


def test_yaml_errors_name_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: at\nawp:\n  gamma: [0.1\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--dry-run")
    assert code == 2 and err.count("\n") == 1
    assert f"{bad}, line 4, column 1: not valid YAML" in err
    bad.write_text("awp:\n  gamma: abc\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--dry-run")
    assert code == 2 and f"awp.gamma must be a number or null (unset); got 'abc' in {bad}" in err
    bad.write_text("awp:\n  gama: 0.01\n")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--dry-run")
    assert code == 2 and f"unknown key awp.gama in {bad}; did you mean 'gamma'?" in err


def test_help_and_version_are_written_for_users(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "usage: torchawp COMMAND" in out and "``" not in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"torchawp {torchawp.__version__}"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "default: 30" in out and "'digits' recipe" in out  # the values that run
    assert "standard" in out.split("--method METHOD")[2][:200]
    assert "\nOne training run:\n" in out  # the group heading is not cut mid-sentence
