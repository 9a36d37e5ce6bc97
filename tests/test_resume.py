"""A resume is the same experiment: the run's own config, only a longer --epochs accepted, a
bit-flipped checkpoint detected and the previous one used."""

import json

import pytest
import torch
import yaml

import torchawp
from torchawp.io.checkpoint import load_state, read_weights
from torchawp.errors import CheckpointError, ConfigError

from .helpers import copy_run, flip_bytes, tiny_config
from .test_cli import TINY, run_cli


# ------------------------------------------------------------------ resume as configured
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
    (["--eps", "0.1"], "attack.eps differs from the run's config.yaml (0.2 there, 0.1 "
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


# ------------------------------------------------------------------ checksums
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
