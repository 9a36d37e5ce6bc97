"""The training engine: adversarial training with or without AWP, one epoch loop, top to bottom.

``train(TrainConfig(...))`` runs a whole experiment and writes a run directory::

    config.yaml        the resolved config
    metrics.jsonl      one row per epoch (lr, train loss/acc, train/val/test clean and robust
                       accuracy and loss, robust generalization gap, seconds)
    tb/                TensorBoard events
    curves.png         train / val / test robust accuracy per epoch
    best.safetensors   weights of the epoch with the best validation robust accuracy
    last.safetensors   weights after the last epoch, and last.state.pt to resume
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from torch import nn

from .attacks import PGD
from .awp import AWP
from .checkpoint import (load_state, load_state_dict_into, read_weights, save_state,
                         save_weights)
from .config import TrainConfig, from_dict, load_recipe, to_dict, validate
from .data import BatchLoader, Splits, load_extra, load_splits
from .errors import CheckpointError, ConfigError, TorchAWPError
from .evaluate import evaluate
from .methods import get_method
from .models import create_model
from .runtime import (AutocastModel, DistEnv, all_reduce_sum, autocast_dtype,
                      init_distributed, resolve_device, rng_state, seed_everything,
                      set_rng_state)


@dataclasses.dataclass
class RunResult:
    """What :func:`train` returns: the run directory and the metrics rows."""

    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1]

    @property
    def best(self) -> dict[str, Any]:
        return next(r for r in self.history if r["epoch"] == self.best_epoch)


def _awp_settings(cfg: TrainConfig, spec) -> tuple[float, int]:
    gamma = cfg.awp.gamma if cfg.awp.gamma is not None else spec.awp_gamma
    warmup = cfg.awp.warmup_epochs if cfg.awp.warmup_epochs is not None else spec.awp_warmup
    return gamma, warmup


def build_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """torch's own schedulers, stepped every iteration (milestones given in epochs)."""
    o = cfg.optim
    if o.schedule == "piecewise":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [m * steps_per_epoch for m in o.milestones], gamma=o.lr_decay)
    if o.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}_{cfg.method}_{cfg.data.name}_{cfg.model}_s{cfg.seed}"


def _check_resumable(saved: dict, cfg: TrainConfig) -> None:
    """A resumed run must be the same experiment (the epoch count may grow)."""
    ours = to_dict(cfg)
    for key in ("method", "model", "model_args", "seed", "beta", "data", "attack", "awp",
                "optim"):
        if saved.get(key) != ours.get(key):
            raise ConfigError(f"--resume: {key} differs from the run's config.yaml "
                              f"({saved.get(key)!r} vs {ours.get(key)!r}); resume with the same "
                              f"settings or start a new --out-dir")


class Trainer:
    """Builds everything a run needs from a config; :meth:`fit` runs it.

    Args:
        cfg: the run's :class:`TrainConfig` (validated here).
        model: any ``nn.Module`` taking [0, 1] images (default: the registry's ``cfg.model``).
        splits: data to use instead of ``cfg.data`` (train / val / test :class:`ArrayDataset`).
    """

    def __init__(self, cfg: TrainConfig, model: Optional[nn.Module] = None,
                 splits: Optional[Splits] = None):
        self.cfg = cfg = validate(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.spec, use_awp = get_method(cfg.method)
        self.device = resolve_device(cfg.device)
        self.dist: DistEnv = init_distributed(self.device)
        seed_everything(cfg.seed)

        self.run_dir = Path(cfg.out_dir) if cfg.out_dir else default_run_dir(cfg)

        d = cfg.data
        self.splits = splits or load_splits(d.name, d.data_dir, d.val_size, d.split_seed,
                                            d.train_subset)
        info = self.splits.info
        if self.spec.needs_extra_data and self.splits.extra is None:
            if d.extra_data == "auto":  # RST's self-training, in-process
                from .pseudo_label import self_label
                self.splits.extra = self_label(cfg, self.splits, self.run_dir / "labeller")
                seed_everything(cfg.seed)  # the model below starts as without the labeller
            else:
                self.splits.extra = load_extra(d.extra_data, info.num_classes, info.in_channels,
                                               info.image_size)
        self.model = model if model is not None else create_model(
            cfg.model, info.num_classes, info.in_channels, info.image_size, info.mean, info.std,
            **cfg.model_args)
        self.model.to(self.device)

        if cfg.channels_last:  # NHWC weights make every convolution (and what follows) NHWC
            self.model.to(memory_format=torch.channels_last)
        # The network every forward goes through: autocast, compile, DDP.
        net = self.model
        dtype = autocast_dtype(cfg.precision, self.device)
        if dtype is not None:
            net = AutocastModel(net, self.device.type, dtype)
        if cfg.compile:
            net = torch.compile(net)
        self.net = net  # attacks, AWP's ascent and evaluation use this (no DDP hooks)
        self.train_net = net
        if self.dist.enabled:
            self.train_net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.attack_gen = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        on_device = lambda ds: ds.to(self.device) if ds is not None else None  # noqa: E731
        augment = d.augment if d.augment != "auto" else info.augment
        self.train_loader = BatchLoader(
            on_device(self.splits.train), d.batch_size, shuffle=True, augment=augment,
            drop_last=self.dist.enabled, generator=self.data_gen, rank=self.dist.rank,
            world_size=self.dist.world_size, extra=on_device(self.splits.extra),
            extra_fraction=d.unlabeled_fraction if self.splits.extra is not None else 0.0)
        self.steps_per_epoch = len(self.train_loader)

        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.optim.lr,
                                         momentum=cfg.optim.momentum,
                                         weight_decay=cfg.optim.weight_decay,
                                         nesterov=cfg.optim.nesterov)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")

        a = cfg.attack
        self.attack = self.spec.attack(a.norm, a.eps, a.step_size, a.steps, a.bn_mode)
        self.eval_attack = PGD(a.norm, a.eps, a.step_size, cfg.eval.steps,
                               restarts=cfg.eval.restarts)
        gamma, warmup = _awp_settings(cfg, self.spec)
        self.awp = AWP(self.net, gamma=gamma, steps=cfg.awp.steps,
                       scale=cfg.awp.scale, warmup_epochs=warmup,
                       finite_only=cfg.skip_nonfinite or cfg.precision == "fp16",
                       ) if use_awp else None

        self.start_epoch = 0
        self.step = 0  # steps done in the epoch in progress (non-zero after a mid-epoch stop)
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.epoch_data_state = self.data_gen.get_state()
        self.skipped = 0
        self._stop: Optional[str] = None
        self.best_epoch = -1
        self.best_val = -math.inf
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ one step, one epoch
    def train_step(self, x: torch.Tensor, y: torch.Tensor, awp_on: bool):
        """One adversarial training step; returns (loss, number correct) as device tensors."""
        x_adv = self.attack(self.net, x, y, self.attack_gen)                    # 1. x' at w
        method_loss = lambda net: self.spec.loss(net, x, x_adv, y, self.cfg.beta)  # noqa: E731
        if awp_on:  # fp16: the ascent loss is scaled like the training loss against
            # underflow; v is normalised per tensor, so the scale cancels exactly
            self.awp.perturb(lambda net: self.scaler.scale(method_loss(net).loss))  # 2-3. w+v
        self.train_net.train()
        out = method_loss(self.train_net)                                      # 4. loss at w+v
        if self.cfg.skip_nonfinite and not torch.isfinite(out.loss):  # a host sync, opt-in
            if awp_on:
                self.awp.restore()
            self.scheduler.step()
            self.skipped += 1
            zero = torch.zeros((), device=self.device)
            return zero, zero
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)                                       #    step at w+v
        self.scaler.update()
        if awp_on:
            self.awp.restore()                                                 #    back: w
        self.scheduler.step()
        correct = (out.logits_adv.argmax(1) == y[: len(out.logits_adv)]).sum()
        return out.loss.detach() * len(y), correct

    def train_epoch(self, epoch: int) -> Optional[dict[str, float]]:
        """One epoch from ``self.step`` on (non-zero after a mid-epoch resume). Returns the
        epoch's train metrics, or None when a stop signal ended it early (the position is in
        ``self.step`` and ``self.sums`` for the checkpoint)."""
        awp_on = self.awp is not None and self.awp.active(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        self.epoch_data_state = self.data_gen.get_state()
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        for i, (x, y) in enumerate(self.train_loader):
            if i < self.step:  # resuming inside an epoch: replay the order, not the steps
                continue
            loss, correct = self.train_step(x, y, awp_on)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
            self.sums[0] += loss.double()  # on the device: no host sync per step
            self.sums[1] += correct.double()
            self.sums[2] += len(y)
            self.step = i + 1
            if self._stop and not self.dist.enabled:
                return None
        loss_sum, correct, n = all_reduce_sum(self.sums.clone()).tolist()  # one host sync
        if int(first_bad) >= 0:
            raise TrainingDiverged(
                f"the training loss became NaN/inf at epoch {epoch + 1}, step {int(first_bad) + 1}"
                f"; the last good checkpoint (epoch {epoch}) is kept in {self.run_dir}. Lower "
                f"optim.lr, or pass --skip_nonfinite true to skip such batches")
        return {"lr": lr, "awp": awp_on, "train_loss": loss_sum / max(n, 1),
                "train_acc": correct / max(n, 1)}

    def evaluate_epoch(self) -> dict[str, float]:
        """Clean and PGD accuracy of train (a fixed subset, at w, eval mode), val and test."""
        gen = torch.Generator(self.device).manual_seed(self.cfg.seed + 2)  # same every epoch
        row = {}
        attacks = [("pgd", self.eval_attack)] if self.cfg.eval.steps > 0 else []
        limits = {"train": self.cfg.eval.train_examples, "val": self.cfg.eval.max_examples,
                  "test": self.cfg.eval.max_examples}
        for split in ("train", "val", "test"):
            data = getattr(self.splits, split)
            if len(data) == 0 or limits[split] == 0:
                continue
            m = evaluate(self.net, data, attacks, batch_size=max(256, self.cfg.data.batch_size),
                         max_examples=limits[split], generator=gen,
                         device=self.device, rank=self.dist.rank,
                         world_size=self.dist.world_size)
            row[f"{split}_clean_acc"], row[f"{split}_clean_loss"] = m["clean_acc"], m["clean_loss"]
            if attacks:
                row[f"{split}_robust_acc"], row[f"{split}_robust_loss"] = m["pgd_acc"], m["pgd_loss"]
        if "train_robust_acc" in row and "test_robust_acc" in row:
            row["gap"] = row["train_robust_acc"] - row["test_robust_acc"]
        return row

    def probe_flatness(self) -> float:
        """Average-case flatness of the robust loss on (up to 500) validation images."""
        from .flatness import average_case_flatness

        data = self.splits.val if len(self.splits.val) else self.splits.test
        x, y = data.tensors(0, 500)
        attack = self.eval_attack if self.cfg.eval.steps > 0 else None
        return average_case_flatness(self.net, x, y, attack, xi=0.5,
                                     samples=self.cfg.eval.flatness_samples,
                                     seed=self.cfg.seed)["flatness"]

    # ------------------------------------------------------------------ checkpoints
    def _meta(self, epoch: int, row: dict) -> dict:
        return {"epoch": epoch, "config": to_dict(self.cfg), "metrics": row,
                "dataset": dataclasses.asdict(self.splits.info)}

    def save(self, epoch: int, row: dict, is_best: bool, step: int = 0) -> None:
        """Checkpoint after ``epoch`` (``step == 0``), or ``step`` steps into epoch ``epoch + 1``
        (a stop signal). The previous checkpoint is kept as ``prev.*`` until the new one is
        complete, so a crash or a full disk at any moment leaves a good one. The training state
        is written last: it commits the checkpoint (a run killed inside its first save has no
        state file and starts over)."""
        if not self.dist.is_main:
            return
        gen_states = {"data": self.data_gen, "attack": self.attack_gen}
        state = {"epoch": epoch, "step": step, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": rng_state(gen_states), "best_epoch": self.best_epoch,
                 "best_val": self.best_val}
        if step:
            state["epoch_data_state"] = self.epoch_data_state
            state["sums"] = self.sums.cpu()
        meta = dict(self._meta(epoch, row), step=step)
        for name in CHECKPOINT_FILES:
            if (self.run_dir / f"last.{name}").exists():
                os.replace(self.run_dir / f"last.{name}", self.run_dir / f"prev.{name}")
        try:
            save_weights(self.run_dir / "last.safetensors", self.model, meta)
            if is_best:
                save_weights(self.run_dir / "best.safetensors", self.model, meta)
            save_state(self.run_dir / "last.state.pt", state)
        except OSError as exc:
            raise CheckpointError(f"could not write a checkpoint to {self.run_dir} ({exc}); the "
                                  f"previous one is intact as prev.*; free space and resume "
                                  f"with --resume") from None

    def _newest_checkpoint(self):
        """The newest matching (training state, weights) pair among ``last.*`` and ``prev.*``.

        Pairs are matched by (epoch, step) across both prefixes, so a crash between any two
        renames or writes of :meth:`save` still leaves a usable pair."""
        states, weights, problems = {}, {}, []
        for prefix in ("last", "prev"):
            try:
                state = load_state(self.run_dir / f"{prefix}.state.pt")
                states.setdefault((state["epoch"], state.get("step", 0)), state)
            except CheckpointError as exc:
                problems.append(str(exc))
            try:
                tensors, meta = read_weights(self.run_dir / f"{prefix}.safetensors")
                weights.setdefault((meta.get("epoch"), meta.get("step", 0)), (tensors, prefix))
            except CheckpointError as exc:
                problems.append(str(exc))
        common = sorted(set(states) & set(weights), reverse=True)
        if not common:
            raise CheckpointError(f"no usable checkpoint in {self.run_dir}: "
                                  + ("; ".join(problems) or "training state and weights are "
                                     "from different steps"))
        key = common[0]
        real = [p for p in problems if "not found" not in p]
        if real or key != max(states):
            reason = real[0] if real else "the newest checkpoint is incomplete"
            warnings.warn(f"{reason}; resuming from epoch {key[0] + 1} step {key[1]} instead",
                          stacklevel=2)
        tensors, prefix = weights[key]
        return states[key], tensors, prefix

    def try_resume(self) -> bool:
        """Continue from the run directory's newest good checkpoint, if there is one;
        mid-epoch checkpoints resume at their step."""
        if not any((self.run_dir / f"{p}.state.pt").is_file() for p in ("last", "prev")):
            return False
        saved_cfg = yaml.safe_load((self.run_dir / "config.yaml").read_text())
        _check_resumable(saved_cfg, self.cfg)
        state, weights, prefix = self._newest_checkpoint()
        load_state_dict_into(self.model, weights, str(self.run_dir / f"{prefix}.safetensors"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], {"data": self.data_gen, "attack": self.attack_gen})
        self.start_epoch = state["epoch"] + 1
        self.step = state.get("step", 0)
        if self.step:  # replay the interrupted epoch's order from its start
            self.data_gen.set_state(state["epoch_data_state"])
            self.sums = state["sums"].to(self.device)
        self.best_epoch, self.best_val = state["best_epoch"], state["best_val"]
        metrics = self.run_dir / "metrics.jsonl"
        rows = [json.loads(line) for line in
                (metrics.read_text().splitlines() if metrics.exists() else []) if line.strip()]
        self.history = [r for r in rows if r["epoch"] <= state["epoch"]]
        return True

    # ------------------------------------------------------------------ the run
    def fit(self) -> RunResult:
        cfg = self.cfg
        resumed = cfg.resume and self.try_resume()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.run_dir.glob(".*.tmp"):  # half-written by a killed process
                stale.unlink(missing_ok=True)
            if not resumed and any((self.run_dir / f"{p}.state.pt").exists()
                                   for p in ("last", "prev")):
                raise ConfigError(f"{self.run_dir} already holds a run; pass --resume to continue "
                                  f"it or choose another --out-dir")
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg),
                                                                     sort_keys=False))
            self._write_metrics()
        writer = self._tensorboard()
        progress = self._progress()
        try:
            with _stop_on_signals(self):
                for epoch in range(self.start_epoch, cfg.epochs):
                    if self._run_epoch(epoch, writer, progress) is None:
                        self.save(epoch - 1, self.history[-1] if self.history else {}, False,
                                  step=self.step)
                        raise TrainingInterrupted(
                            f"stopped by {self._stop} at epoch {epoch + 1}, step {self.step}; "
                            f"checkpoint saved in {self.run_dir}: continue with --resume")
        finally:
            if progress is not None:
                progress.close()
            writer.close()
        if self.dist.is_main:
            from .plots import plot_curves
            plot_curves(self.history, self.run_dir / "curves.png")
        return RunResult(self.run_dir, self.history, self.best_epoch)

    def _run_epoch(self, epoch: int, writer, progress) -> Optional[dict]:
        """Train, evaluate, select, log and checkpoint one epoch (None if stopped early)."""
        cfg = self.cfg
        start = time.perf_counter()
        train_row = self.train_epoch(epoch)
        if train_row is None:
            return None
        self.step = 0
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        row = {"epoch": epoch, **train_row, "train_seconds": time.perf_counter() - start}
        if (epoch + 1) % cfg.eval.every == 0 or epoch == cfg.epochs - 1:
            row.update(self.evaluate_epoch())
        probe = cfg.eval.flatness_every
        if probe and ((epoch + 1) % probe == 0 or epoch == cfg.epochs - 1):
            row["flatness_avg"] = self.probe_flatness()
        if self.skipped:
            row["skipped_steps"] = self.skipped
        row["seconds"] = time.perf_counter() - start
        # Model selection on the held-out validation split, never on the test set.
        selector = row.get("val_robust_acc", row.get("val_clean_acc"))
        if len(self.splits.val) == 0:  # no validation split: best is last
            is_best = True
        else:
            is_best = selector is not None and selector > self.best_val
        if is_best:
            self.best_epoch = epoch
            self.best_val = selector if selector is not None else self.best_val
        self.history.append(row)
        if self.dist.is_main:
            self._write_metrics()
            self.save(epoch, row, is_best)
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    writer.add_scalar(key, value, epoch)
        if progress is not None:
            progress.set_postfix_str(_postfix(row), refresh=False)
            progress.update(1)
        return row

    def _write_metrics(self) -> None:
        from .checkpoint import atomic_write
        text = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write(self.run_dir / "metrics.jsonl", lambda tmp: tmp.write_text(text))

    def _tensorboard(self):
        if not self.dist.is_main:
            return _NullWriter()
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=self.start_epoch)

    def _progress(self):
        if not (self.cfg.progress and self.dist.is_main):
            return None
        from tqdm.auto import tqdm
        return tqdm(total=self.cfg.epochs, initial=self.start_epoch, unit="epoch",
                    dynamic_ncols=True, desc=f"{self.cfg.method} {self.cfg.data.name}")


CHECKPOINT_FILES = ("state.pt", "safetensors")


class TrainingInterrupted(TorchAWPError):
    """SIGINT/SIGTERM: a checkpoint was saved at the current step."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class TrainingDiverged(TorchAWPError):
    """The training loss became NaN or infinite."""


@contextlib.contextmanager
def _stop_on_signals(trainer: "Trainer"):
    """SIGINT and SIGTERM set a flag; the loop stops after the current step and checkpoints.
    Under DDP the signals keep their default action (the ranks cannot agree on a step without
    a collective per step); such runs resume from the last epoch checkpoint."""
    if threading.current_thread() is not threading.main_thread() or trainer.dist.enabled:
        yield
        return

    def handler(signum, frame):
        trainer._stop = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _NullWriter:
    def add_scalar(self, *args, **kwargs):
        pass

    def close(self):
        pass


def _postfix(row: dict) -> str:
    parts = [f"ep {row['epoch']}", f"loss {row['train_loss']:.3f}"]
    for key, name in (("val_robust_acc", "val rob"), ("test_robust_acc", "test rob"),
                      ("gap", "gap")):
        if key in row:
            parts.append(f"{name} {100 * row[key]:.1f}")
    return " | ".join(parts)


def train(cfg: TrainConfig | dict | None = None, model: Optional[nn.Module] = None,
          splits: Optional[Splits] = None, **overrides) -> RunResult:
    """Run one experiment: ``torchawp.train(load_recipe("digits"), epochs=10)``.

    ``cfg`` may be a :class:`TrainConfig`, a plain dict of its fields, or None (the offline
    ``digits`` recipe);
    keyword ``overrides`` set top-level fields. Returns a :class:`RunResult`.
    """
    if cfg is None:
        cfg = load_recipe("digits")
    elif isinstance(cfg, dict):
        cfg = from_dict(cfg)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return Trainer(cfg, model=model, splits=splits).fit()


def summary_table(result: RunResult) -> str:
    """The end-of-run table: best and last checkpoint, clean / PGD accuracy and the gap."""
    rows = [("best", result.best), ("last", result.last)]
    header = f"{'checkpoint':<16}{'test clean':>12}{'test PGD':>10}{'train PGD':>11}{'gap':>8}"
    lines = [header, "-" * len(header)]
    pct = lambda r, k: f"{100 * r[k]:.2f}" if k in r else "-"  # noqa: E731
    for name, r in rows:
        lines.append(f"{name + ' (epoch ' + str(r['epoch'] + 1) + ')':<16}"
                     f"{pct(r, 'test_clean_acc'):>12}{pct(r, 'test_robust_acc'):>10}"
                     f"{pct(r, 'train_robust_acc'):>11}{pct(r, 'gap'):>8}")
    return "\n".join(lines)

