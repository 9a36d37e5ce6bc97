"""Weight averaging (EMA): the warm-up formula, the average of w (never w + v), exact resume,
checkpoints, and the commands that read them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torchawp
from torchawp.io.checkpoint import read_weights
from torchawp.training.ema import EMA
from torchawp.errors import ConfigError
from torchawp.training.trainer import Trainer, TrainingInterrupted

from .helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_ema_follows_the_warm_up_formula_and_copies_batchnorm_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.5)
    expected = None
    for n in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model(torch.randn(4, 2))  # train mode: running statistics move
        ema.update(model)
        w = model[0].weight.detach()
        tau = min(0.5, (1 + n) / (10 + n))
        expected = w.clone() if n == 0 else tau * expected + (1 - tau) * w
        assert torch.allclose(ema.module[0].weight, expected, atol=1e-6)
        assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # copied
    assert int(ema.averaged.n_averaged) == 5


def test_ema_averages_the_weights_at_w_never_at_w_plus_v(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", method="at-awp", ema=1e-9))
    seen = []
    original = trainer.perturbation.perturbed

    def spy(*args, **kwargs):  # records w + v while the step runs
        ctx = original(*args, **kwargs)

        class Wrapped:
            def __enter__(self):
                ctx.__enter__()
                seen.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)
        return Wrapped()

    trainer.perturbation.perturbed = spy
    trainer.train_epoch(0)  # the loop: every step, then the callbacks (the average's update)
    perturbed = seen[-1]
    ema = next(c for c in trainer.callbacks if isinstance(c, EMA))  # the run's own callback
    averaged = dict(ema.module.named_parameters())
    moved = 0
    for name, w in trainer.model.named_parameters():
        # decay 1e-9: the average is the current weights, at w after v is removed
        assert torch.allclose(averaged[name], w, atol=1e-6, rtol=0), name
        moved += not torch.allclose(perturbed[name], w, atol=1e-4)
    assert moved > 0  # AWP really moved the weights while stepping


@pytest.fixture(scope="module")
def ema_reference(tmp_path_factory):
    return torchawp.train(tiny_config(tmp_path_factory.mktemp("ema") / "run", epochs=3,
                                      ema=0.9))


def test_ema_resume_mid_epoch_is_bit_identical(tmp_path, ema_reference):
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=3, ema=0.9))
    step, calls = trainer.train_step, []

    def step_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == trainer.steps_per_epoch + 3:
            trainer._on_signal("SIGTERM")
        return step(*args, **kwargs)

    trainer.train_step = step_then_stop
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    resumed = torchawp.train(tiny_config(tmp_path / "run", epochs=3, ema=0.9, resume=True))
    for name in ("ema_last", "ema_best", "last"):
        a = read_weights(Path(resumed.run_dir) / f"{name}.safetensors")[0]
        b = read_weights(Path(ema_reference.run_dir) / f"{name}.safetensors")[0]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed.ema_best_epoch == ema_reference.ema_best_epoch


def test_the_final_table_and_checkpoints_hold_the_average(ema_reference):
    run = Path(ema_reference.run_dir)
    rows = dict(ema_reference.rows())
    assert {"ema best", "ema last"} <= set(rows)
    last = ema_reference.last
    assert rows["ema last"]["test_robust_acc"] == last["ema_test_robust_acc"]
    assert "ema_val_robust_acc" in last and "ema_gap" in last
    _, meta = read_weights(run / "ema_last.safetensors")
    assert meta["ema_decay"] == 0.9 and meta["ema_updates"] == 3 * -(-400 // 128)  # a step each
    assert meta["metrics"]["test_robust_acc"] == last["ema_test_robust_acc"]
    # the average differs from the model it averages
    a = read_weights(run / "ema_last.safetensors")[0]
    b = read_weights(run / "last.safetensors")[0]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_eval_and_export_read_the_average(tmp_path, ema_reference):
    run = ema_reference.run_dir
    result = subprocess.run([sys.executable, "-m", "torchawp.cli", "eval", str(run),
                             "--which", "ema", "--n-examples", "40", "--no-checks",
                             "--attacks", "pgd20", "--out-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [r["which"] for r in report] == ["ema_best", "ema_last"]
    out = tmp_path / "model.pt"
    export = [sys.executable, "-m", "torchawp.cli", "export", str(run), "--out", str(out)]
    result = subprocess.run([*export, "--which", "ema"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # ema means both, as in every command
    assert result.returncode == 2 and "pass --which ema_best" in result.stderr
    result = subprocess.run([*export, "--which", "ema_best"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    state = torch.load(out, weights_only=True)
    ema_best = read_weights(Path(run) / "ema_best.safetensors")[0]
    assert all(torch.equal(state[k], ema_best[k]) for k in ema_best)


def test_a_run_without_an_average_says_how_to_get_one(tmp_path):
    run = torchawp.train(tiny_config(tmp_path / "run", epochs=1))
    result = subprocess.run([sys.executable, "-m", "torchawp.cli", "export", str(run.run_dir),
                             "--which", "ema_best", "--out", str(tmp_path / "m.pt")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "kept no weight average; train with --ema DECAY" in result.stderr


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5, -0.1])
def test_ema_outside_zero_one_is_refused(tmp_path, decay):
    with pytest.raises(ConfigError, match="ema must be a decay in \\(0, 1\\)"):
        Trainer(tiny_config(tmp_path / "run", ema=decay))


def test_resume_refuses_to_switch_the_average_on(tmp_path):
    torchawp.train(tiny_config(tmp_path / "run", epochs=1))
    with pytest.raises(ConfigError, match="ema differs from the run's config.yaml"):
        torchawp.train(tiny_config(tmp_path / "run", epochs=2, ema=0.9, resume=True))
