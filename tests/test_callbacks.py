"""What observes the loop is a callback: the run's own (progress, TensorBoard, the estimate, the
flatness probe) and yours, called in order at every hook; a measurement a callback adds is
saved and logged like the run's own."""

import json

import torch

from torchawp.training.callbacks import Callback
from torchawp.training.trainer import Trainer

from .helpers import tiny_config


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append("fit_start")

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(f"epoch_start {epoch}")

    def on_step_end(self, trainer, step):
        self.calls.append("step")

    def on_evaluate(self, trainer, epoch):
        self.calls.append("evaluate")

    def on_metrics(self, trainer, epoch, row):
        self.calls.append("metrics")

    def on_epoch_end(self, trainer, epoch, row):
        self.calls.append(f"epoch_end {row['epoch']} {'weight_norm' in row}")

    def on_fit_end(self, trainer):
        self.calls.append("fit_end")


class WeightNorm(Callback):
    """The shape docs/architecture.md shows: one hook, one measurement in the epoch's row."""

    def on_metrics(self, trainer, epoch, row):
        row["weight_norm"] = float(torch.cat([p.detach().flatten()
                                              for p in trainer.model.parameters()]).norm())


def test_your_callbacks_are_called_in_order_and_their_measurements_saved(tmp_path):
    recorder = Recorder()
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=2), callbacks=[WeightNorm(), recorder])
    trainer.fit()
    steps = ["step"] * trainer.steps_per_epoch
    assert recorder.calls == (["fit_start", "epoch_start 0", *steps, "evaluate", "metrics",
                               "epoch_end 1 True", "epoch_start 1", *steps, "evaluate",
                               "metrics", "epoch_end 2 True", "fit_end"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
            .splitlines()]
    assert all(r["weight_norm"] > 0 for r in rows)
    assert rows[0]["weight_norm"] != rows[1]["weight_norm"]


def test_fit_end_is_called_when_a_run_fails(tmp_path):
    recorder = Recorder()
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=1), callbacks=[recorder])

    def fail(*args):
        raise RuntimeError("boom")

    trainer.train_step = fail
    try:
        trainer.fit()
    except RuntimeError:
        pass
    assert recorder.calls == ["fit_start", "epoch_start 0", "fit_end"]
