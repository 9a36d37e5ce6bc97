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

import dataclasses
import json
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from torch import nn

from .attacks import PGD
from .awp import AWP
from .checkpoint import (load_state, load_state_dict_into, read_weights, save_state,
                         save_weights, unwrap)
from .config import TrainConfig, from_dict, load_recipe, to_dict, validate
from .data import BatchLoader, Splits, load_extra, load_splits
from .errors import CheckpointError, ConfigError
from .evaluate import evaluate
from .methods import get_method
from .models import create_model
from .runtime import (AutocastModel, ChannelsLast, DistEnv, autocast_dtype, init_distributed,
                      resolve_device, rng_state, seed_everything, set_rng_state)


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

        d = cfg.data
        self.splits = splits or load_splits(d.name, d.data_dir, d.val_size, d.split_seed,
                                            d.train_subset)
        info = self.splits.info
        if self.spec.needs_extra_data and self.splits.extra is None:
            self.splits.extra = load_extra(d.extra_data, info.num_classes, info.in_channels,
                                           info.image_size)
        self.model = model if model is not None else create_model(
            cfg.model, info.num_classes, info.in_channels, info.image_size, info.mean, info.std,
            **cfg.model_args)
        self.model.to(self.device)

        # The network every forward goes through: channels_last, autocast, compile, DDP.
        net = self.model
        if cfg.channels_last:
            net.to(memory_format=torch.channels_last)
            net = ChannelsLast(net)
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
        self.awp = AWP(self.net, gamma=gamma if use_awp else 0.0, steps=cfg.awp.steps,
                       scale=cfg.awp.scale, warmup_epochs=warmup) if use_awp else None

        self.run_dir = Path(cfg.out_dir) if cfg.out_dir else default_run_dir(cfg)
        self.start_epoch = 0
        self.best_epoch = -1
        self.best_val = -math.inf
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ one step, one epoch
    def train_step(self, x: torch.Tensor, y: torch.Tensor, awp_on: bool):
        """One adversarial training step; returns (loss, number correct) as device tensors."""
        x_adv = self.attack(self.net, x, y, self.attack_gen)                    # 1. x' at w
        method_loss = lambda net: self.spec.loss(net, x, x_adv, y, self.cfg.beta)  # noqa: E731
        if awp_on:
            self.awp.perturb(lambda net: method_loss(net).loss)                # 2-3. w + v
        self.train_net.train()
        out = method_loss(self.train_net)                                      # 4. loss at w+v
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)                                       #    step at w+v
        self.scaler.update()
        if awp_on:
            self.awp.restore()                                                 #    back: w
        self.scheduler.step()
        correct = (out.logits_adv.argmax(1) == y[: len(out.logits_adv)]).sum()
        return out.loss.detach() * len(y), correct

    def train_epoch(self, epoch: int) -> dict[str, float]:
        awp_on = self.awp is not None and self.awp.active(epoch)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        for x, y in self.train_loader:
            loss, correct = self.train_step(x, y, awp_on)
            sums += torch.stack([loss.double(), correct.double(),
                                 torch.tensor(len(y), dtype=torch.float64, device=self.device)])
        loss_sum, correct, n = sums.tolist()  # the epoch's one host sync
        return {"lr": lr, "awp": awp_on, "train_loss": loss_sum / n, "train_acc": correct / n}

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

    def save(self, epoch: int, row: dict, is_best: bool) -> None:
        if not self.dist.is_main:
            return
        gen_states = {"data": self.data_gen, "attack": self.attack_gen}
        save_state(self.run_dir / "last.state.pt", {
            "epoch": epoch, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rng_state(gen_states), "best_epoch": self.best_epoch,
            "best_val": self.best_val})
        save_weights(self.run_dir / "last.safetensors", self.model, self._meta(epoch, row))
        if is_best:
            save_weights(self.run_dir / "best.safetensors", self.model, self._meta(epoch, row))

    def try_resume(self) -> bool:
        """Continue from ``last.*`` in the run directory, if present."""
        state_path = self.run_dir / "last.state.pt"
        if not state_path.is_file():
            return False
        saved_cfg = yaml.safe_load((self.run_dir / "config.yaml").read_text())
        _check_resumable(saved_cfg, self.cfg)
        state = load_state(state_path)
        weights, meta = read_weights(self.run_dir / "last.safetensors")
        if meta.get("epoch") != state["epoch"]:
            raise CheckpointError(f"{self.run_dir}: last.safetensors (epoch {meta.get('epoch')}) "
                                  f"and last.state.pt (epoch {state['epoch']}) disagree")
        load_state_dict_into(self.model, weights, str(self.run_dir / "last.safetensors"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], {"data": self.data_gen, "attack": self.attack_gen})
        self.start_epoch = state["epoch"] + 1
        self.best_epoch, self.best_val = state["best_epoch"], state["best_val"]
        rows = [json.loads(line) for line in
                (self.run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        self.history = [r for r in rows if r["epoch"] <= state["epoch"]]
        return True

    # ------------------------------------------------------------------ the run
    def fit(self) -> RunResult:
        cfg = self.cfg
        resumed = cfg.resume and self.try_resume()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resumed and (self.run_dir / "last.state.pt").exists():
                raise ConfigError(f"{self.run_dir} already holds a run; pass --resume to continue "
                                  f"it or choose another --out-dir")
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg),
                                                                     sort_keys=False))
            self._write_metrics()
        writer = self._tensorboard()
        progress = self._progress()
        for epoch in range(self.start_epoch, cfg.epochs):
            start = time.perf_counter()
            row = {"epoch": epoch, **self.train_epoch(epoch)}
            row["train_seconds"] = time.perf_counter() - start
            if (epoch + 1) % cfg.eval.every == 0 or epoch == cfg.epochs - 1:
                row.update(self.evaluate_epoch())
            probe = cfg.eval.flatness_every
            if probe and ((epoch + 1) % probe == 0 or epoch == cfg.epochs - 1):
                row["flatness_avg"] = self.probe_flatness()
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
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        if self.dist.is_main:
            from .plots import plot_curves
            plot_curves(self.history, self.run_dir / "curves.png")
        return RunResult(self.run_dir, self.history, self.best_epoch)

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

