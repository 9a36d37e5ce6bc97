"""The time estimate before a long run: the evaluation plan, the estimate against the run's own
measured time, the line and when it appears, and what --dry-run says."""

import time

import pytest

import torchawp.estimate as estimate
from torchawp.cli import main
from torchawp.data import load_splits
from torchawp.recipes import load_recipe
from torchawp.train import Trainer


def _config(out_dir, **fields):
    cfg = load_recipe("digits")
    cfg.epochs, cfg.progress, cfg.out_dir, cfg.threads = 6, False, str(out_dir), 2
    cfg.awp.warmup_epochs, cfg.eval.curve_every = 0, 3
    for key, value in fields.items():
        setattr(cfg, key, value)
    return cfg


def test_the_plan_counts_every_evaluated_image():
    cfg = _config("unused")
    splits = load_splits("digits", val_size=cfg.data.val_size)
    val, test = len(splits.val), len(splits.test)
    train = min(cfg.eval.train_examples, len(splits.train))
    full = train + val + test
    # epochs 1, 2: val; 3: curves; 4, 5: val; 6 (last): curves; then the best epoch on train+test
    assert estimate.evaluation_plan(cfg, splits) == [val, val, full, val, val, full,
                                                     train + test]
    cfg.ema = 0.9  # the average is evaluated beside the model
    assert estimate.evaluation_plan(cfg, splits, 4) == [2 * val, 2 * full, 2 * (train + test)]


def test_the_estimate_is_within_30_percent_of_the_runs_own_time(tmp_path):
    trainer = Trainer(_config(tmp_path / "run"))
    start = time.perf_counter()
    trainer.fit()
    measured = time.perf_counter() - start
    predicted = trainer.estimate["total_seconds"]
    assert abs(predicted - measured) / measured < 0.3, (predicted, measured)
    assert trainer.history[0]["estimated_seconds"] == predicted


def test_the_line_appears_on_long_runs_and_names_the_cheaper_options(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setattr(estimate, "SAY_ABOVE_SECONDS", 0)  # every run counts as long
    cfg = _config(tmp_path / "run", epochs=2, progress=True)
    cfg.eval.curve_every = 1
    Trainer(cfg).fit()
    err = capsys.readouterr().err
    assert "expected time of the 2 epoch(s) to go:" in err
    line = estimate.estimate_line({"total_seconds": 600, "train_seconds": 100,
                                   "eval_seconds": 500}, 4)
    assert line.startswith("expected time of the 4 epoch(s) to go: 10 min (training 2 min, "
                           "evaluation 8 min)")
    assert "--eval.curve-every N" in line and "--eval.max-examples" in line
    assert "evaluation is most" not in estimate.estimate_line(
        {"total_seconds": 600, "train_seconds": 500, "eval_seconds": 100}, 4)


def test_dry_run_says_the_plan(capsys):
    assert main(["train", "--dry-run", "--epochs", "12"]) == 0
    out = capsys.readouterr().out
    assert "# plan: 12 epochs x 8 steps = 96 training steps (PGD-10 each)" in out


def test_dry_run_without_the_data_says_so(capsys, tmp_path):
    assert main(["train", "--dry-run", "--data.name", "cifar10", "--data.data_dir",
                 str(tmp_path)]) == 0
    assert "# plan: unknown until the data is in place (cifar10 not found" in \
        capsys.readouterr().out


@pytest.mark.parametrize("dataset, eps", [("fashion-mnist", 0.1), ("mnist", 0.3)])
def test_mnist_and_fashion_mnist_without_a_config_start_from_their_cpu_recipes(capsys, tmp_path,
                                                                              dataset, eps):
    # the plan line adapts to whether the IDX files are installed; the recipe does not
    assert main(["train", "--data.name", dataset, "--data.data-dir", str(tmp_path),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "train_subset: 10000" in out and "width: 16" in out and "max_examples: 1000" in out
    assert f"eps: {eps}" in out and f"name: {dataset}" in out
    assert f"# plan: unknown until the data is in place ({dataset}" in out
