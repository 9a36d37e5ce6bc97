"""What a training run keeps and reports after it runs: the best epoch, the epoch's running
sums, the result object and the final table (what it shows while it runs: ``callbacks.py``)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional

import torch

from ..config import TrainConfig
from ..perturbations import perturbation_class


@dataclasses.dataclass
class RunResult:
    """What :func:`torchawp.train` returns: the run directory and the metrics rows (epochs
    counted from 1)."""

    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    # the best epochs of what callbacks report beside the model, by metrics prefix (the
    # weight average's, "ema_")
    reported_best: dict[str, int] = dataclasses.field(default_factory=dict)
    # the validated config that ran (method defaults filled in)
    config: Optional[TrainConfig] = None

    @property
    def ema_best_epoch(self) -> Optional[int]:
        """The weight average's best epoch (None without ``ema``)."""
        return self.reported_best.get("ema_")

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1]

    @property
    def best(self) -> dict[str, Any]:
        return next(r for r in self.history if r["epoch"] == self.best_epoch)

    def rows(self) -> list[tuple[str, dict[str, Any]]]:
        """``(name, metrics)`` of every reported checkpoint: best, last, and the best and last
        of what is reported beside the model (the weight average: ``ema best``, ``ema last``,
        its metrics under the plain names)."""
        rows = [("best", self.best), ("last", self.last)]
        for prefix, epoch in self.reported_best.items():
            best = next(r for r in self.history if r["epoch"] == epoch)
            for which, r in (("best", best), ("last", self.last)):
                rows.append((f"{prefix.rstrip('_')} {which}",
                             {"epoch": r["epoch"], **unprefixed(r, prefix)}))
        return rows


def unprefixed(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The metrics in an epoch row that start with ``prefix`` (the weight average's,
    ``ema_*``), under their plain names."""
    return {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}


@dataclasses.dataclass
class Best:
    """The best epoch so far (from 1; 0: none yet) by a validation metric of the model, or of
    the weight average (``prefix`` ``ema_``)."""

    prefix: str = ""
    epoch: int = 0
    value: float = -math.inf

    def update(self, row: dict[str, Any], key: str, has_val: bool = True) -> bool:
        """Whether ``row``'s epoch is the new best by ``key`` (falling back to clean
        validation accuracy); with no validation split, every epoch is (best = last)."""
        value = row.get(self.prefix + key, row.get(self.prefix + "val_clean_acc"))
        better = not has_val or (value is not None and value > self.value)
        if better:
            self.epoch = row["epoch"]
            self.value = value if value is not None else self.value
        return better


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


def describe(cfg: TrainConfig) -> str:
    """One line naming what a validated config trains: method, data, model, threat model and
    the weight perturbation with its resolved size and the epochs it is on."""
    text = (f"{cfg.method} on {cfg.data.name} ({cfg.model}), {cfg.attack.norm} eps "
            f"{cfg.attack.eps:.4g}")
    if cfg.perturbation.name != "none":
        wp = perturbation_class(cfg.perturbation.name)
        text += (f", {wp.title} {wp.size(cfg)} on epochs {cfg.awp.warmup_epochs + 1}-"
                 f"{cfg.epochs}")
    if cfg.consistency.weight:
        text += (f", consistency weight {cfg.consistency.weight:g} T "
                 f"{cfg.consistency.temperature:g}")
    if cfg.ema:
        text += f", EMA {cfg.ema:g}"
    return text


def summary_table(result: RunResult) -> str:
    """The end-of-run table: best and last checkpoint, clean / PGD accuracy and the gap."""
    rows = [(f"{name} (epoch {r['epoch']})", r) for name, r in result.rows()]
    width = max(16, max(len(label) for label, _ in rows) + 1)
    header = f"{'checkpoint':<{width}}{'test clean':>12}{'test PGD':>10}{'train PGD':>11}{'gap':>8}"
    lines = [header, "-" * len(header)]
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    for label, r in rows:
        lines.append(f"{label:<{width}}"
                     f"{pct(r, 'test_clean_acc'):>12}{pct(r, 'test_robust_acc'):>10}"
                     f"{pct(r, 'train_robust_acc'):>11}{pct(r, 'gap'):>8}")
    return "\n".join(lines)
