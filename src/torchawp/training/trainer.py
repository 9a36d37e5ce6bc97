"""The trainer: :class:`Trainer` builds a run from a config, :meth:`Trainer.fit` runs it (build,
fit, one epoch, one step). Files are :class:`~torchawp.training.rundir.RunDir`'s business;
the entry point that also prepares RST's self-labelled data is
:func:`torchawp.training.run.train`."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..attacks import PGD
from ..config import TrainConfig
from ..config.recipes import to_dict
from ..config.resolve import validate
from ..data import Splits, data_fingerprint
from ..errors import TrainingDiverged, TrainingInterrupted
from ..evaluation.accuracy import evaluate_splits
from ..io.checkpoint import load_state_dict_into, read_weights
from ..methods import build_method, get_method
from ..models import create_model
from ..perturbations import build as build_perturbation
from ..plots import plot_curves
from ..runtime import (DistEnv, all_reduce_sum, execution_nets, init_distributed,
                       resolve_device, rng_state, seed_everything, set_rng_state,
                       stop_on_signals, warn_if_cpus_are_taken)
from .callbacks import Callback, Estimate, FlatnessProbe, Progress, TensorBoard
from .data import run_data
from .ema import EMA
from .estimate import eval_images
from .log import Best, EpochTotals, RunResult
from .rundir import RunDir, default_run_dir
from .schedules import build_optimizer, build_scheduler


# the callbacks a config may ask for, each built by ``from_config(trainer)`` (None: not asked)
RUN_CALLBACKS = (FlatnessProbe, EMA)


class Trainer:
    """Builds everything a run needs from a config; :meth:`fit` runs it.

    Args:
        cfg: the run's :class:`TrainConfig` (validated here, method defaults filled in).
        model: any ``nn.Module`` taking [0, 1] images (default: the registry's ``cfg.model``).
        splits: data to use instead of ``cfg.data`` (train / val / test :class:`ArrayDataset`);
            ``data.extra_data: auto`` runs start with :func:`torchawp.train`, which prepares it.
        callbacks: :class:`~torchawp.training.callbacks.Callback` objects called after the
            run's own (progress, TensorBoard, the estimate, the flatness probe).
    """

    def __init__(self, cfg: TrainConfig, model: Optional[nn.Module] = None,
                 splits: Optional[Splits] = None, callbacks: Sequence[Callback] = ()):
        self.cfg = cfg = validate(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.spec, _ = get_method(cfg.method)
        self.device = resolve_device(cfg.device)
        self.dist: DistEnv = init_distributed(self.device)
        seed_everything(cfg.seed)
        self.run = RunDir(cfg.out_dir or default_run_dir(cfg))
        self.run_dir = self.run.path
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.attack_gen = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        self.splits, self.train_loader = run_data(cfg, splits, self.device, self.dist,
                                                  self.data_gen)
        self.data_sha256 = data_fingerprint(cfg.data)  # checked on resume and by eval
        info = self.splits.info

        self.model = model if model is not None else create_model(
            cfg.model, info.num_classes, info.in_channels, info.image_size, info.mean, info.std,
            **cfg.model_args)
        self.model.to(self.device)

        # attacks, AWP's ascent and evaluation use net (no DDP hooks); the training loss train_net
        self.net, self.train_net = execution_nets(self.model, cfg.precision, cfg.channels_last,
                                                  cfg.compile, self.device, self.dist)

        self.steps_per_epoch = len(self.train_loader)

        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")

        a = cfg.attack
        # the method's halves: crafting x', the training and ascent losses, BatchNorm's forwards
        self.method = build_method(cfg, self.model)
        self.eval_attack = PGD(a.norm, a.eps, a.step_size, cfg.eval.steps,
                               restarts=cfg.eval.restarts)
        # w <- w + v around the training loss (AWP, RWP, SAM ...; None: none); its ascent loss
        # is scaled like the training loss in fp16 (the balls normalise, so the scale cancels)
        self.perturbation = build_perturbation(cfg, self.net)
        if self.perturbation is not None:
            self.perturbation.loss_scale = self.scaler.scale
        self.start_epoch = 0  # epochs done before this process started
        self.step = 0  # steps done in the epoch in progress (non-zero after a mid-epoch stop)
        self.totals = EpochTotals.zeros(self.device)
        self.epoch_data_state = self.data_gen.get_state()
        self.skipped, self.saved = 0, None  # saved: (epochs, step) of the newest checkpoint
        self._stop: Optional[str] = None
        self.best = Best()  # selected on the validation split
        self.history: list[dict[str, Any]] = []
        self.clock = time.perf_counter  # what times epochs and the estimate (tests inject one)
        # what observes the loop; the loop calls them all and never branches on them
        self.progress = Progress(cfg.progress, self.dist.is_main)
        self.estimator = Estimate(self.progress)
        self.callbacks = [self.progress, TensorBoard(self.run_dir, self.dist.is_main),
                          self.estimator]
        # and what the config asks for (the flatness probe, the weight average), then yours
        self.callbacks += [c for c in (kind.from_config(self) for kind in RUN_CALLBACKS) if c]
        self.callbacks += list(callbacks)

    @property
    def selection_key(self) -> str:
        """The metric the best epoch is selected on: on the validation split, never the test
        set (standard training: clean accuracy)."""
        return "val_clean_acc" if self.spec.attack_loss == "none" else "val_robust_acc"

    @property
    def estimate(self) -> Optional[dict]:
        """The run's expected time, after its first evaluated epoch (None before)."""
        return self.estimator.result

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, perturb: bool):
        """One adversarial training step (the paper's Algorithm 1); returns (loss sum, number
        correct) as device tensors. ``perturb``: with the weight perturbation (past its
        warm-up)."""
        m, wp = self.method, self.perturbation
        # 1. x' at w; AWP's approximate ascent takes the last PGD iteration's weight gradient
        ascent_grads = None
        if perturb and self.cfg.awp.ascent == "last-pgd-step":
            x_adv, ascent_grads = m.attack.with_weight_grads(self.net, x, y, wp.params,
                                                             self.attack_gen)
        else:
            x_adv = m.craft(self.net, x, y, self.attack_gen)
        # 2. w <- w + v, v from the ascent of the perturbation's loss (AWP: one step of the
        # method's adversarial loss; nothing without a perturbation)
        perturbed = (wp.perturbed(wp.closure(m, x, x_adv, y), perturb, ascent_grads)
                     if wp is not None else contextlib.nullcontext())
        with perturbed:
            # 3. the training loss at w + v, and the optimizer step there (SAM and the
            # practitioners' AWP go back to w first, in before_step)
            self.train_net.train()
            out = m.loss(self.train_net, x, x_adv, y)
            # skip_nonfinite costs a host sync per step, hence opt-in
            finite = not self.cfg.skip_nonfinite or bool(torch.isfinite(out.loss))
            if finite:
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(out.loss).backward()
                if wp is not None:
                    wp.before_step()
                self.scaler.step(self.optimizer)
                self.scaler.update()
        # 4. back at w (v removed on leaving the block)
        self.scheduler.step()
        m.after_step(self.net, x)  # bn_updates authors, AT: a clean forward
        if not finite:
            self.skipped += 1
            return (torch.zeros((), device=self.device),) * 2
        correct = (out.logits_adv.argmax(1) == y).sum()
        return out.loss.detach() * len(y), correct

    def train_epoch(self, epoch: int) -> Optional[dict[str, float]]:
        """Train epoch ``epoch`` (0-based index) from ``self.step`` on (non-zero after a
        mid-epoch resume). Returns the epoch's train metrics, or None when a stop signal ended
        it early (the position is in ``self.step`` and ``self.totals`` for the checkpoint)."""
        self.method.epoch = epoch  # 0-based, for losses that schedule by epoch
        perturb = self.perturbation is not None and self.perturbation.applies_in(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        self.epoch_data_state = self.data_gen.get_state()
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        # resuming inside an epoch, batches before self.step replay their random draws only
        for i, x, y in self.train_loader.batches(start=self.step):
            loss, correct = self.train_step(x, y, perturb)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i, first_bad)
            self.totals.add(loss, correct, len(y))
            self.step = i + 1
            self._call("on_step_end", i)
            if self._stop and not self.dist.enabled:
                return None
        loss_sum, correct, n = all_reduce_sum(self.totals.as_tensor()).tolist()  # one host sync
        if int(first_bad) >= 0:
            raise TrainingDiverged(
                f"the training loss became NaN/inf at epoch {epoch + 1}, step {int(first_bad) + 1}"
                f"; {self.run.kept(self.saved)}. Start a new run with a lower --optim.lr, or pass "
                f"--skip-nonfinite to skip such batches")
        return {"lr": lr, "perturbed": perturb, "train_loss": loss_sum / max(n, 1),
                "train_acc": correct / max(n, 1),
                **(self.perturbation.epoch_stats() if perturb else {})}

    def evaluate_epoch(self, splits=("train", "val", "test"),
                       net: Optional[nn.Module] = None) -> Optional[dict[str, float]]:
        """The epoch's metrics of ``net`` (default: the model) on ``splits``
        (:func:`~torchawp.evaluation.accuracy.evaluate_splits`: the protocol of ``torchawp
        eval``); None if a stop signal interrupted it. The progress bar counts the evaluated
        images."""
        e = self.cfg.eval
        return evaluate_splits(
            net or self.net, self.splits, self.eval_attack if e.steps > 0 else None, splits,
            train_examples=e.train_examples, max_examples=e.max_examples,
            device=self.device, rank=self.dist.rank, world_size=self.dist.world_size,
            should_stop=(lambda: self._stop is not None) if not self.dist.enabled else None,
            on_batch=self.progress.image_counter(eval_images(self.cfg, self.splits, splits)))

    def _reported(self) -> list[tuple]:
        """``(metrics prefix, net, module, best)`` of the model and of what callbacks report
        beside it (the weight average)."""
        return [("", self.net, self.model, self.best)] + [
            entry for callback in self.callbacks for entry in callback.reported(self)]

    def save(self, epochs_done: int, row: dict, is_best: bool, step: int = 0) -> None:
        """Checkpoint after ``epochs_done`` epochs (``step == 0``), or ``step`` steps into the
        next one (a stop signal)."""
        if not self.dist.is_main:
            return
        state = {"epoch": epochs_done, "step": step, "data_sha256": self.data_sha256,
                 "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": rng_state(self._generators()),
                 "best_epoch": self.best.epoch, "best_val": self.best.value}
        if step:
            state["epoch_data_state"] = self.epoch_data_state
            state["sums"] = self.totals.as_tensor().cpu()
        meta = {"epoch": epochs_done, "step": step, "config": to_dict(self.cfg), "metrics": row,
                "dataset": dataclasses.asdict(self.splits.info), "data_sha256": self.data_sha256}
        keeping = [c for c in self.callbacks if c.state_key]  # the weight average's state
        state.update({c.state_key: c.state_dict() for c in keeping})
        self.run.save(self.model, state, meta, is_best,
                      [c.checkpoint(meta, row, epoch_end=not step) for c in keeping])
        self.saved = (epochs_done, step)
        keep = self.cfg.keep_checkpoints
        if keep and not step and (epochs_done % keep == 0 or epochs_done == self.cfg.epochs):
            self.run.keep_epoch(self.model, meta)

    def _generators(self) -> dict[str, torch.Generator]:
        """The run's random streams, saved with every checkpoint: data order and augmentation,
        attacks, and the weight perturbation's draws (random noise)."""
        own = getattr(self.perturbation, "generator", None)
        return {"data": self.data_gen, "attack": self.attack_gen,
                **({"perturbation": own} if own is not None else {})}

    def _start(self) -> None:
        """Start a new run, or continue the saved one (``cfg.resume``) from its newest good
        checkpoint; mid-epoch checkpoints resume at their step. Refuses a resume that would
        change the experiment, a resume of nothing, and a new run over an existing one."""
        run, cfg = self.run, self.cfg
        run.check_start(cfg.resume)
        if cfg.resume:
            checkpoint, notice = run.resume_point(to_dict(cfg), self.data_sha256, validate)
            if notice and self.dist.is_main:
                warnings.warn(notice, stacklevel=3)
            if checkpoint:
                self._load(*checkpoint)
        if self.dist.is_main:
            run.path.mkdir(parents=True, exist_ok=True)
            run.remove_stale_temporaries()
            run.write_config(to_dict(cfg))
            run.write_metrics(self.history)

    def _load(self, state: dict, weights: dict, prefix: str) -> None:
        load_state_dict_into(self.model, weights, str(self.run_dir / f"{prefix}.safetensors"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], self._generators())
        self.start_epoch = state["epoch"]
        self.step = state.get("step", 0)
        self.saved = (self.start_epoch, self.step)
        if self.step:  # replay the interrupted epoch's order from its start
            self.data_gen.set_state(state["epoch_data_state"])
            self.totals = EpochTotals.from_tensor(state["sums"].to(self.device))
        self.best = Best("", state["best_epoch"], state["best_val"])
        for callback in self.callbacks:
            if callback.state_key:
                callback.load_state_dict(state[callback.state_key])
        self.history = [r for r in self.run.read_metrics() if r["epoch"] <= state["epoch"]]

    def fit(self) -> RunResult:
        """Train every remaining epoch; the run directory is locked throughout."""
        cfg = self.cfg
        with self.run.lock() if self.dist.is_main else contextlib.nullcontext():
            self._start()
            warn_if_cpus_are_taken(self.device, cfg.threads)
            self._call("on_fit_start")
            try:
                with stop_on_signals(self._on_signal, enabled=not self.dist.enabled):
                    for epoch in range(self.start_epoch, cfg.epochs):
                        if self._run_epoch(epoch) is None:
                            self.save(epoch, self.history[-1] if self.history else {}, False,
                                      step=self.step)
                            raise TrainingInterrupted(
                                f"stopped by {self._stop} in epoch {epoch + 1} of {cfg.epochs} "
                                f"(step {self.step} of {self.steps_per_epoch}); checkpoint "
                                f"saved. Continue with: torchawp train --resume {self.run_dir}")
            finally:
                self._call("on_fit_end")
            self._evaluate_best()
            if self.dist.is_main:
                plot_curves(self.history, self.run_dir / "curves.png")
        return RunResult(self.run_dir, self.history, self.best.epoch,
                         {prefix: best.epoch for prefix, _, _, best in self._reported()[1:]},
                         cfg)

    def _run_epoch(self, epoch: int) -> Optional[dict]:
        """Train, evaluate, select, log and checkpoint epoch ``epoch`` (0-based index; its row
        says ``epoch + 1``). None if a stop signal came first."""
        cfg = self.cfg
        start = self.clock()
        self._call("on_epoch_start", epoch)
        train_row = self.train_epoch(epoch)
        if train_row is None:
            return None
        row = {"epoch": epoch + 1, **train_row, "train_seconds": self.clock() - start}
        last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval.every == 0 or last:
            self._call("on_evaluate", epoch)
            curves = (epoch + 1) % cfg.eval.curve_every == 0 or last
            for prefix, net, _, _ in self._reported():  # the model, and its average
                evaluation = self.evaluate_epoch(("train", "val", "test") if curves
                                                 else ("val",), net=net)
                if evaluation is None:  # stopped: the checkpoint keeps the trained steps
                    return None
                row.update({prefix + k: v for k, v in evaluation.items()})
            row["eval_seconds"] = self.clock() - start - row["train_seconds"]
        self._call("on_metrics", epoch, row)  # what callbacks measure: estimate, flatness
        self.step = 0
        self.totals = EpochTotals.zeros(self.device)
        if self.skipped:
            row["skipped_steps"] = self.skipped
        row["seconds"] = self.clock() - start
        is_best = self.best.update(row, self.selection_key, has_val=len(self.splits.val) > 0)
        self.history.append(row)
        if self.dist.is_main:
            self.run.write_metrics(self.history)
            self.save(epoch + 1, row, is_best)
        self._call("on_epoch_end", epoch, row)
        return row

    def _evaluate_best(self) -> None:
        """The final table reports the best checkpoint (and the average's best) on train and
        test with the full protocol: when its epoch had no curve evaluation
        (``eval.curve_every``), evaluate the saved best weights now and complete its row
        (``evaluated_after_training``)."""
        for prefix, net, model, best in self._reported():
            row = next((r for r in self.history if r["epoch"] == best.epoch), None)
            if row is None or f"{prefix}test_clean_acc" in row:
                continue
            if self.dist.enabled:  # rank 0 wrote the checkpoint
                torch.distributed.barrier()
            current = {k: v.clone() for k, v in model.state_dict().items()}
            file = self.run_dir / f"{prefix}best.safetensors"
            load_state_dict_into(model, read_weights(file)[0], str(file))
            try:
                evaluation = self.evaluate_epoch(("train", "test"), net=net)
                row.update({prefix + k: v for k, v in evaluation.items()},
                           **{f"{prefix}evaluated_after_training": True})
            finally:
                model.load_state_dict(current)
        if self.dist.is_main:
            self.run.write_metrics(self.history)

    def _on_signal(self, name: str) -> None:
        """The first SIGINT/SIGTERM: finish the step (or evaluation batch), then checkpoint."""
        self._stop = name
        if self.cfg.progress:
            print(f"\ntorchawp: {name}: finishing the current step, then saving a checkpoint "
                  f"(press Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
