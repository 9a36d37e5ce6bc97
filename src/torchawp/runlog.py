"""What a training run reports while and after it runs: the progress bar, TensorBoard, the
result object and the final table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .methods import get_method


@dataclasses.dataclass
class RunResult:
    """What :func:`torchawp.train` returns: the run directory and the metrics rows (epochs
    counted from 1)."""

    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1]

    @property
    def best(self) -> dict[str, Any]:
        return next(r for r in self.history if r["epoch"] == self.best_epoch)


@dataclasses.dataclass
class EpochTotals:
    """Running sums of one epoch, kept on the device (no host sync per step)."""

    loss: torch.Tensor     # sum of per-example training loss
    correct: torch.Tensor  # examples classified correctly under the training attack
    count: torch.Tensor    # examples seen

    @classmethod
    def zeros(cls, device) -> "EpochTotals":
        return cls.from_tensor(torch.zeros(3, dtype=torch.float64, device=device))

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "EpochTotals":
        return cls(*t.clone().unbind())

    def as_tensor(self) -> torch.Tensor:
        return torch.stack([self.loss, self.correct, self.count])

    def add(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        self.loss += loss.double()
        self.correct += correct.double()
        self.count += n


class NullWriter:
    """Stands in for TensorBoard on ranks that do not write."""

    def add_scalar(self, *args, **kwargs):
        pass

    def close(self):
        pass


def postfix(row: dict) -> str:
    """The progress bar's summary of an epoch row."""
    parts = [f"loss {row['train_loss']:.3f}"]
    for key, name in (("val_robust_acc", "val rob"), ("test_robust_acc", "test rob"),
                      ("gap", "gap")):
        if key in row:
            parts.append(f"{name} {100 * row[key]:.1f}")
    return " | ".join(parts)


def describe(cfg: TrainConfig) -> str:
    """One line naming what a run trains: method, data, model, threat model and, for AWP
    methods, the resolved gamma and the epochs AWP is on."""
    _, use_awp = get_method(cfg.method)
    text = (f"{cfg.method} on {cfg.data.name} ({cfg.model}), {cfg.attack.norm} eps "
            f"{cfg.attack.eps:.4g}")
    if use_awp:
        w = cfg.awp
        text += f", AWP gamma {w.gamma:g} on epochs {w.warmup_epochs + 1}-{cfg.epochs}"
    return text


def summary_table(result: RunResult) -> str:
    """The end-of-run table: best and last checkpoint, clean / PGD accuracy and the gap."""
    rows = [("best", result.best), ("last", result.last)]
    header = f"{'checkpoint':<16}{'test clean':>12}{'test PGD':>10}{'train PGD':>11}{'gap':>8}"
    lines = [header, "-" * len(header)]
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    for name, r in rows:
        lines.append(f"{name + ' (epoch ' + str(r['epoch']) + ')':<16}"
                     f"{pct(r, 'test_clean_acc'):>12}{pct(r, 'test_robust_acc'):>10}"
                     f"{pct(r, 'train_robust_acc'):>11}{pct(r, 'gap'):>8}")
    return "\n".join(lines)


def tensorboard_writer(run_dir: Path, epochs_done: int):
    """TensorBoard events in ``run_dir/tb``, dropping any logged after ``epochs_done`` (a
    resumed run rewrites them)."""
    from torch.utils.tensorboard import SummaryWriter  # heavy (TensorFlow protobufs): on use

    return SummaryWriter(str(run_dir / "tb"), purge_step=epochs_done + 1)


def progress_bar(cfg: TrainConfig, steps_per_epoch: int, epochs_done: int, step: int):
    """One bar over every training step of the run, so long epochs show progress too; None
    when ``cfg.progress`` is off."""
    if not cfg.progress:
        return None
    return tqdm(total=cfg.epochs * steps_per_epoch, initial=epochs_done * steps_per_epoch + step,
                unit="step", dynamic_ncols=True, desc=f"{cfg.method} {cfg.data.name}")
