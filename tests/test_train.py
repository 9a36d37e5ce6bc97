import json

import pytest
import torch
import yaml

import torchawp
from torchawp.io.checkpoint import read_weights
from torchawp.errors import ConfigError
from torchawp.training.log import summary_table
from torchawp.training.trainer import Trainer

from .conftest import TinyBNNet
from .helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("run") / "r", epochs=3)
    return torchawp.train(cfg)


def test_run_directory_holds_config_metrics_curves_tensorboard_and_checkpoints(run):
    files = {p.name for p in run.run_dir.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "curves.png", "best.safetensors",
            "last.safetensors", "last.state.pt", "tb"} <= files
    assert any((run.run_dir / "tb").iterdir())
    rows = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ("lr", "train_loss", "train_acc", "train_robust_acc", "val_clean_acc",
                "val_robust_acc", "test_clean_acc", "test_robust_acc", "test_robust_loss",
                "gap", "seconds"):
        assert key in rows[-1], key
    assert rows[-1]["gap"] == pytest.approx(rows[-1]["train_robust_acc"]
                                            - rows[-1]["test_robust_acc"])
    assert rows[0]["lr"] == pytest.approx(0.05) and rows[1]["lr"] == pytest.approx(0.005)
    saved = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert saved["method"] == "at-awp" and saved["epochs"] == 3


def test_best_checkpoint_is_selected_on_validation_not_test(run):
    rows = run.history
    best = max(rows, key=lambda r: r["val_robust_acc"])
    assert run.best_epoch == best["epoch"]
    _, meta = read_weights(run.run_dir / "best.safetensors")
    assert meta["epoch"] == best["epoch"]


def test_standard_training_selects_its_best_checkpoint_on_clean_validation_accuracy(tmp_path):
    """Robust accuracy would pick an early, barely trained checkpoint of a model that never saw
    an attack (it did: epoch 1 of 30, 73.57% clean)."""
    run = torchawp.train(tiny_config(tmp_path / "std", method="standard", epochs=4))
    by_clean = max(run.history, key=lambda r: r["val_clean_acc"])["epoch"]
    by_robust = max(run.history, key=lambda r: r["val_robust_acc"])["epoch"]
    assert run.best_epoch == by_clean != by_robust


def test_saved_best_checkpoint_reproduces_the_logged_test_accuracy(run):
    model = torchawp.load(run.run_dir)
    assert not model.training
    from torchawp.data import load_splits
    test = load_splits("digits").test
    x, y = test.tensors(0, 150)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(run.best["test_clean_acc"], abs=1e-6)


def test_summary_table_shows_best_and_last(run):
    table = summary_table(run)
    assert f"best (epoch {run.best_epoch})" in table and "last (epoch 3)" in table
    assert f"{100 * run.last['test_robust_acc']:.2f}" in table


def test_awp_is_off_during_warmup_epochs(tmp_path):
    cfg = tiny_config(tmp_path / "w", epochs=2)
    cfg.awp.warmup_epochs = 1
    result = torchawp.train(cfg)
    assert [r["perturbed"] for r in result.history] == [False, True]


def test_plain_at_never_perturbs(tmp_path):
    result = torchawp.train(tiny_config(tmp_path / "a", method="at", epochs=1))
    assert result.history[0]["perturbed"] is False


def test_resume_continues_bit_identically(tmp_path):
    full = torchawp.train(tiny_config(tmp_path / "full", epochs=3))
    torchawp.train(tiny_config(tmp_path / "part", epochs=2))
    resumed = torchawp.train(tiny_config(tmp_path / "part", epochs=3, resume=True))
    a, _ = read_weights(full.run_dir / "last.safetensors")
    b, _ = read_weights(resumed.run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.last["test_robust_acc"] == full.last["test_robust_acc"]


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    torchawp.train(tiny_config(tmp_path / "x", epochs=1))
    with pytest.raises(ConfigError, match="--resume"):
        torchawp.train(tiny_config(tmp_path / "x", epochs=1))


def test_resume_with_a_different_experiment_is_refused(tmp_path):
    torchawp.train(tiny_config(tmp_path / "y", epochs=1))
    with pytest.raises(ConfigError, match="method differs"):
        torchawp.train(tiny_config(tmp_path / "y", epochs=2, method="at", resume=True))


def test_any_nn_module_trains_with_awp(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path / "m", epochs=1), model=TinyBNNet())
    assert [n for n, _ in trainer.perturbation.named_params] == ["conv.weight", "fc.weight"]
    before = trainer.model.conv.weight.detach().clone()
    result = trainer.fit()
    assert not torch.equal(before, trainer.model.conv.weight)
    assert 0 <= result.last["test_robust_acc"] <= 1
    with pytest.raises(torchawp.CheckpointError, match="pass model="):
        torchawp.load(result.run_dir)
    loaded = torchawp.load(result.run_dir, which="last", model=TinyBNNet())
    assert torch.equal(loaded.conv.weight, trainer.model.conv.weight)


def test_cpu_runs_are_reproducible(tmp_path):
    a = torchawp.train(tiny_config(tmp_path / "r1", epochs=1))
    b = torchawp.train(tiny_config(tmp_path / "r2", epochs=1))
    wa, _ = read_weights(a.run_dir / "last.safetensors")
    wb, _ = read_weights(b.run_dir / "last.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_flatness_probe_is_logged(tmp_path):
    cfg = tiny_config(tmp_path / "p", epochs=2)
    cfg.eval.flatness_every = 1
    cfg.eval.flatness_samples = 1
    result = torchawp.train(cfg)
    assert all(r["flatness_avg"] > 0 for r in result.history)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["flatness_avg"] == result.last["flatness_avg"]
