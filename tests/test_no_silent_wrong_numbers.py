"""Numbers that must agree or be recomputed: an evaluation cache keyed by checkpoint and data,
the training table and `torchawp eval` giving the same numbers, the best checkpoint measured
with the full protocol, and a stop during evaluation resuming bit-identically."""

import os
import signal

import pytest
import torch

import torchawp
from torchawp.io.checkpoint import read_weights
from torchawp.errors import TrainingInterrupted
from torchawp.evaluation.suite import evaluate_checkpoint
from torchawp.training.trainer import Trainer

from .helpers import copy_run, tiny_config


# ------------------------------------------------------------------ the evaluation cache
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

    calls = []

    def signal_in_evaluation(*args, **kwargs):
        calls.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        return attack(*args, **kwargs)

    trainer.eval_attack.perturb = signal_in_evaluation
    with pytest.raises(TrainingInterrupted,
                       match="Continue with: torchawp train --resume .*run$"):
        trainer.fit()
    _, meta = read_weights(tmp_path / "run" / "last.safetensors")
    assert (meta["epoch"], meta["step"]) == (0, trainer.steps_per_epoch)  # trained, not evaluated
    assert len(calls) == 1  # the evaluation stopped after the batch the signal came in
    resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=2, resume=True))
    a, _ = read_weights(resumed.run_dir / "last.safetensors")
    b, _ = read_weights(reference.run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[0]["test_robust_acc"] == reference.history[0]["test_robust_acc"]
