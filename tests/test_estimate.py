"""The time estimate before a long run: the evaluation plan, the estimate against the run's own
measured time, the line and when it appears, and what --dry-run says."""

import pytest
import torch

import torchawp.training.estimate as estimate
from torchawp.cli import main
from torchawp.data import load_splits
from torchawp.config.recipes import load_recipe
from torchawp.training.trainer import Trainer

from .helpers import THREADS


def _config(out_dir, **fields):
    cfg = load_recipe("digits")
    cfg.epochs, cfg.progress, cfg.out_dir, cfg.threads = 6, False, str(out_dir), THREADS
    cfg.awp.warmup_epochs, cfg.eval.curve_every = 0, 3
    # small: what these tests check is arithmetic and what is printed, not the training
    cfg.model_args = {"width": 8, "batchnorm": True, "hidden": 32}
    cfg.data.train_subset, cfg.attack.steps, cfg.eval.steps = 300, 2, 2
    cfg.eval.train_examples, cfg.eval.max_examples = 100, 150
    for key, value in fields.items():
        setattr(cfg, key, value)
    return cfg


def test_the_plan_counts_every_evaluated_image():
    cfg = _config("unused")
    splits = load_splits("digits", val_size=cfg.data.val_size)
    val, test = (min(len(s), cfg.eval.max_examples) for s in (splits.val, splits.test))
    train = min(cfg.eval.train_examples, len(splits.train))
    full = train + val + test
    # epochs 1, 2: val; 3: curves; 4, 5: val; 6 (last): curves; then the best epoch on train+test
    assert estimate.evaluation_plan(cfg, splits) == [val, val, full, val, val, full,
                                                     train + test]
    cfg.ema = 0.9  # the average is evaluated beside the model
    assert estimate.evaluation_plan(cfg, splits, 4) == [2 * val, 2 * full, 2 * (train + test)]


class VirtualClock:
    """A clock that only the patched work advances: a training step costs ``step`` seconds
    (the first one ``one_time`` more), an evaluated image ``image`` seconds."""

    def __init__(self, trainer, step=0.5, one_time=3.0, image=0.01, awp_step=0.8):
        self.now, self.first = 0.0, True
        self.trainer = trainer
        train_step, evaluate_epoch = trainer.train_step, trainer.evaluate_epoch

        def timed_step(x, y, awp_on):
            self.now += (awp_step if awp_on else step) + one_time * self.first
            self.first = False
            return train_step(x, y, awp_on)

        def timed_evaluation(splits=("train", "val", "test"), net=None):
            self.now += image * estimate.eval_images(trainer.cfg, trainer.splits, splits)
            return evaluate_epoch(splits, net)

        trainer.train_step, trainer.evaluate_epoch = timed_step, timed_evaluation
        trainer.clock = lambda: self.now


def test_the_estimate_after_the_first_epoch_prices_the_whole_run_exactly(tmp_path):
    # with every step and every evaluated image at a known price (a virtual clock, so the test
    # holds on a busy machine), the estimate is the run's own total: the first step's one-time
    # cost counted once, every evaluation in the plan (the final best-epoch one included)
    trainer = Trainer(_config(tmp_path / "run", epochs=4))  # val; curves; val; curves + best
    trainer.cfg.eval.curve_every = 2
    clock = VirtualClock(trainer, awp_step=0.5)
    trainer.fit()
    predicted = trainer.estimate["total_seconds"]
    # the plan counts the best epoch's final evaluation on train + test, which runs only when
    # that epoch did not measure its curves (an upper bound known before the run)
    unused = 0.0 if any(r.get("evaluated_after_training") for r in trainer.history) else \
        0.01 * estimate.eval_images(trainer.cfg, trainer.splits, ("train", "test"))
    assert predicted == pytest.approx(clock.now + unused, rel=1e-9)
    assert trainer.history[0]["estimated_seconds"] == predicted


def test_the_dry_run_estimate_prices_steps_with_and_without_awp(tmp_path, monkeypatch):
    cfg = _config(tmp_path / "run")
    cfg.awp.warmup_epochs = 2  # epochs 1-2 without AWP, 3-6 with it
    trainer = Trainer(cfg)
    clock = VirtualClock(trainer, step=0.5, awp_step=0.8, image=0.01)
    evaluate = estimate.evaluate

    def timed_evaluation(model, data, attacks, max_examples, **kwargs):
        clock.now += 0.01 * max_examples
        return evaluate(model, data, attacks, max_examples=max_examples, **kwargs)

    monkeypatch.setattr(estimate, "evaluate", timed_evaluation)
    est = estimate.measure(trainer, timed_steps=2)
    steps = trainer.steps_per_epoch
    images = sum(estimate.evaluation_plan(trainer.cfg, trainer.splits))
    assert est["train_seconds"] == pytest.approx(steps * (2 * 0.5 + 4 * 0.8))
    assert est["eval_seconds"] == pytest.approx(0.01 * images)
    assert not (tmp_path / "run").exists()  # measuring writes nothing


def test_the_line_appears_on_long_runs_and_names_the_cheaper_options(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setattr(estimate, "SAY_ABOVE_SECONDS", 0)  # every run counts as long
    cfg = _config(tmp_path / "run", epochs=2, progress=True)
    cfg.eval.curve_every = 1
    Trainer(cfg).fit()
    err = capsys.readouterr().err
    assert "expected time of the whole run (2 epochs):" in err and "to go" in err
    line = estimate.estimate_line({"total_seconds": 600, "train_seconds": 100,
                                   "eval_seconds": 500}, 3, 7, done_seconds=120)
    assert line.startswith("expected time of epochs 4-7: 10 min (training 2 min, "
                           "evaluation 8 min), about 8 min to go")
    assert "--eval.curve-every N" in line and "--n-examples" in line
    assert "evaluation is most" not in estimate.estimate_line(
        {"total_seconds": 600, "train_seconds": 500, "eval_seconds": 100}, 0, 4)


def test_the_bar_counts_evaluated_images_and_no_progress_logs_each_epoch(tmp_path, capsys):
    cfg = _config(tmp_path / "bar", epochs=1, progress=True)
    Trainer(cfg).fit()
    err = capsys.readouterr().err
    assert "evaluating" in err and "images" in err  # the bar moves while evaluating
    Trainer(_config(tmp_path / "log", epochs=1)).fit()
    lines = [line for line in capsys.readouterr().err.splitlines() if " epoch " in line]
    assert len(lines) == 1 and lines[0].startswith("torchawp: at-awp digits epoch 1/1: loss ")


def test_dry_run_says_the_plan_and_the_time_from_timed_steps(capsys, tmp_path):
    assert main(["train", "--dry-run", "--epochs", "12", "--out-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "# plan: 12 epochs x 8 steps = 96 training steps (PGD-10 each)" in out
    assert "# expected time of the whole run (12 epochs): " in out
    assert "(from 3 timed steps and one evaluation batch)" in out
    assert not (tmp_path / "r").exists()


def test_dry_run_of_rst_says_the_labeller_is_not_in_the_estimate(capsys):
    assert main(["train", "--dry-run", "--method", "rst-awp"]) == 0
    out = capsys.readouterr().out
    assert "first, a standard labeller trains" in out and "(not in the estimate)" in out


def test_dry_run_refuses_what_the_run_would_refuse(capsys, tmp_path):
    assert main(["train", "--dry-run", "--dataset", "cifar10", "--data-dir",
                 str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "name: cifar10" in out  # the resolved config is still shown
    assert err.startswith("torchawp: error: cifar10 not found") and err.count("\n") == 1
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["train", "--dry-run", "--dataset", "npz", "--data-dir", str(bad)]) == 2
    assert "is not a readable .npz file" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--dry-run", "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("dataset, eps", [("fashion-mnist", 0.1), ("mnist", 0.3)])
def test_mnist_and_fashion_mnist_without_a_config_start_from_their_cpu_recipes(capsys, tmp_path,
                                                                              dataset, eps):
    # the plan line adapts to whether the IDX files are installed; the recipe does not
    assert main(["train", "--dataset", dataset, "--data-dir", str(tmp_path),
                 "--dry-run"]) == 2  # the files are not there
    out, err = capsys.readouterr()
    assert "train_subset: 10000" in out and "width: 16" in out and "max_examples: 1000" in out
    assert f"eps: {eps}" in out and f"name: {dataset}" in out
    assert err.startswith(f"torchawp: error: {dataset} not found")
