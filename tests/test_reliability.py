"""Nothing is lost: signals, SIGKILL, corrupt and missing checkpoints, full disks, NaNs."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import torchawp
from torchawp.io.checkpoint import read_weights
from torchawp.errors import CheckpointError
from torchawp.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted

from .helpers import THREADS, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def weights(run_dir, name="last"):
    return read_weights(Path(run_dir) / f"{name}.safetensors")[0]


def same(a, b):
    differ = [k for k in a if not torch.equal(a[k], b.get(k))] if a.keys() == b.keys() else ["keys"]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[0]}: max " + (
        f"{(a[differ[0]] - b[differ[0]]).abs().max().item():.3g}" if differ[0] != "keys" else "")
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run."""
    return torchawp.train(tiny_config(tmp_path_factory.mktemp("ref") / "run", epochs=3))


def test_sigterm_mid_epoch_saves_and_resume_is_bit_identical(tmp_path, reference):
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=3))
    step = trainer.train_step
    calls = []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == trainer.steps_per_epoch + 2:  # inside the second epoch
            os.kill(os.getpid(), signal.SIGTERM)
        return step(*args, **kwargs)

    trainer.train_step = step_then_signal
    with pytest.raises(TrainingInterrupted, match="SIGTERM in epoch 2 of 3 \\(step 2 of"):
        trainer.fit()
    _, meta = read_weights(tmp_path / "run" / "last.safetensors")
    assert (meta["epoch"], meta["step"]) == (1, 2)  # 1 epoch done, 2 steps into the second
    resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=3, resume=True))
    assert same(weights(resumed.run_dir), weights(reference.run_dir))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[1]["train_loss"] == pytest.approx(reference.history[1]["train_loss"])


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "torchawp.cli", "train",
            "--model_args", "{width: 8, batchnorm: true, hidden: 32}", "--epochs", "3",
            "--threads", str(THREADS), "--no-progress", "--attack.steps", "3",
            "--step-size", "0.08",
            "--eval.steps", "3", "--eval.train_examples", "100", "--n-examples", "150",
            "--awp.warmup_epochs", "0", "--optim.milestones", "[1]", "--data.train_subset", "400"]
    # the uninterrupted run is a fresh process too: same threads, same kernels, same numbers
    full = subprocess.run(args + ["--out-dir", str(tmp_path / "full")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    args += ["--out-dir", str(run)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(2400):  # up to about two minutes of polling; a kill before any
        if proc.poll() is not None:  # checkpoint still has to resume exactly
            break
        if (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-way through the second epoch, or thereabouts
    proc.wait()
    resumed = subprocess.run(args + ["--resume", str(run)], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert same(weights(run), weights(tmp_path / "full"))


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    torchawp.train(tiny_config(tmp_path / "run", epochs=2))
    last = tmp_path / "run" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:-200])  # truncated, as by a crash of the disk
    with pytest.warns(UserWarning, match="corrupt"):
        resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=3, resume=True))
    assert same(weights(resumed.run_dir), weights(reference.run_dir))


def test_full_disk_fails_loudly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                   reference):
    torchawp.train(tiny_config(tmp_path / "run", epochs=1))
    good = weights(tmp_path / "run")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)  # the training state's write fails
    with pytest.raises(CheckpointError, match="No space left.*prev"):
        torchawp.train(tiny_config(tmp_path / "run", epochs=2, resume=True))
    assert same(weights(tmp_path / "run", "prev"), good)
    monkeypatch.undo()
    resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=3, resume=True))
    assert same(weights(resumed.run_dir), weights(reference.run_dir))


class NaNAfter(nn.Module):
    """Logits turn NaN once ``armed`` (the test arms it mid-training)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.armed = False

    def forward(self, x):
        out = self.inner(x)
        return out * float("nan") if self.armed and self.training else out


def test_nan_loss_stops_the_run_naming_epoch_and_step(tmp_path):
    from torchawp.models import create_model

    model = NaNAfter(create_model("small_cnn", 10, 1, 8, width=8, hidden=32))
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=3), model=model)
    step = trainer.train_step
    calls = []

    def arm_in_epoch_two(*args, **kwargs):
        calls.append(1)
        model.armed = len(calls) > trainer.steps_per_epoch + 1
        return step(*args, **kwargs)

    trainer.train_step = arm_in_epoch_two
    with pytest.raises(TrainingDiverged, match="epoch 2, step 2.*the checkpoint of epoch 1 "
                                               "is kept in"):
        trainer.fit()
    _, meta = read_weights(tmp_path / "run" / "last.safetensors")
    assert meta["epoch"] == 1  # the diverged epoch 2 was not saved


def test_a_run_that_diverges_in_its_first_epoch_says_it_kept_no_checkpoint(tmp_path):
    from torchawp.models import create_model

    model = NaNAfter(create_model("small_cnn", 10, 1, 8, width=8, hidden=32))
    model.armed = True
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1; no checkpoint was written"):
        Trainer(tiny_config(tmp_path / "run", epochs=2), model=model).fit()
    assert not list((tmp_path / "run").glob("*.safetensors"))


def test_skip_nonfinite_skips_bad_batches_and_goes_on(tmp_path):
    from torchawp.models import create_model

    model = NaNAfter(create_model("small_cnn", 10, 1, 8, width=8, hidden=32))
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=2, skip_nonfinite=True), model=model)
    step = trainer.train_step
    calls = []

    def arm_twice(*args, **kwargs):
        calls.append(1)
        model.armed = len(calls) in (2, 3)
        return step(*args, **kwargs)

    trainer.train_step = arm_twice
    result = trainer.fit()
    assert result.history[0]["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_metrics_file_is_valid_json_lines_after_every_epoch(tmp_path):
    result = torchawp.train(tiny_config(tmp_path / "run", epochs=2))
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert not [p for p in result.run_dir.iterdir() if ".tmp" in p.name]


def test_crash_between_the_renames_of_a_save_still_resumes_exactly(tmp_path, reference):
    torchawp.train(tiny_config(tmp_path / "run", epochs=2))
    run = tmp_path / "run"
    os.replace(run / "last.state.pt", run / "prev.state.pt")  # as if killed right after this
    resumed = torchawp.train(tiny_config(run, epochs=3, resume=True))
    assert same(weights(resumed.run_dir), weights(reference.run_dir))


class Killed(BaseException):
    """A SIGKILL, as far as the code under test can tell: nothing after it runs."""


@pytest.mark.parametrize("victim", ["last.safetensors", "best.safetensors", "last.state.pt"])
def test_kill_inside_the_first_save_resumes_exactly(tmp_path, monkeypatch, reference, victim):
    import torchawp.io.checkpoint as ckpt

    write = ckpt.atomic_write

    def killed_at_victim(path, fn):
        if Path(path).name == victim:
            raise Killed
        write(path, fn)

    monkeypatch.setattr(ckpt, "atomic_write", killed_at_victim)
    with pytest.raises(Killed):
        torchawp.train(tiny_config(tmp_path / "run", epochs=3))
    monkeypatch.undo()
    resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=3, resume=True))
    assert same(weights(resumed.run_dir), weights(reference.run_dir))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
