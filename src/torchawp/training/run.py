"""The entry point of a training run: ``torchawp.train(cfg)``.

It resolves the run directory, locks it, prepares the data (for RST with
``data.extra_data: auto``, trains the standard labeller and pseudo-labels the hidden images
first), then hands everything to :class:`~torchawp.training.trainer.Trainer`. Nothing trains
inside a
constructor.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..io.checkpoint import load
from ..config import TrainConfig
from ..config.recipes import from_dict, load_recipe
from ..data import ArrayDataset, Splits, load_splits
from ..errors import ConfigError
from .estimate import estimate_line, measure, plan_line
from .pseudo_label import pseudo_label
from .rundir import RunDir, default_run_dir
from .log import RunResult
from .callbacks import Callback
from .trainer import Trainer
from ..config.resolve import validate


def train(cfg: TrainConfig | dict | None = None, model: Optional[nn.Module] = None,
          splits: Optional[Splits] = None, callbacks: Sequence[Callback] = (),
          **overrides) -> RunResult:
    """Run one experiment: ``torchawp.train(load_recipe("digits"), epochs=10)``.

    ``cfg`` may be a :class:`TrainConfig`, a plain dict of its fields, or None (the offline
    ``digits`` recipe); keyword ``overrides`` set top-level fields; ``model`` is any
    ``nn.Module`` taking [0, 1] images; ``splits`` replaces the config's data; ``callbacks``
    observe the loop beside the run's own (:mod:`torchawp.training.callbacks`). The run
    directory is locked for the whole run. Returns a :class:`RunResult`.
    """
    if cfg is None:
        cfg = load_recipe("digits")
    elif isinstance(cfg, dict):
        cfg = from_dict(cfg)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    if not cfg.out_dir:
        cfg = dataclasses.replace(cfg, out_dir=str(default_run_dir(cfg)))
    cfg = validate(cfg)  # once: the Trainer knows the result
    run = RunDir(cfg.out_dir)
    main_rank = int(os.environ.get("RANK", 0)) == 0  # under torchrun only rank 0 writes
    run.check_start(cfg.resume)  # before the lock creates a mistyped directory
    with run.lock() if main_rank else contextlib.nullcontext():
        run.check_start(cfg.resume)  # again, under the lock: before a labeller trains
        splits = prepare_splits(cfg, splits)
        return Trainer(cfg, model=model, splits=splits, callbacks=callbacks).fit()


def prepare_splits(cfg: TrainConfig, splits: Optional[Splits] = None) -> Splits:
    """The run's data: ``splits`` or the config's dataset, plus RST's self-labelled extra data
    when ``data.extra_data`` is ``auto`` (the labeller's run lives in ``OUT_DIR/labeller``)."""
    d = cfg.data
    splits = splits or load_splits(d.name, d.data_dir, d.val_size, d.split_seed, d.train_subset,
                                   d.image_size)
    if splits.extra is None and d.extra_data == "auto":
        splits.extra = self_label(cfg, splits, Path(cfg.out_dir) / "labeller")
    return splits


def self_label(cfg: TrainConfig, splits: Splits, run_dir: Path) -> ArrayDataset:
    """RST's self-training in one call (``data.extra_data: auto``): train a standard model on
    the labelled training split (``cfg``'s model, data and optimizer, no attack, a cosine
    schedule over ``data.self_label_epochs``), pick its best epoch on the validation split, and
    return the training images that ``data.train_subset`` left out with that model's labels.
    The labeller's run lives in ``run_dir`` and is resumed, not retrained, when the RST run is
    resumed (its settings do not depend on the RST run's epoch count)."""
    if splits.unused is None or len(splits.unused) == 0:
        raise ConfigError("data.extra_data auto labels the training images that "
                          "data.train_subset leaves out, and it left none; lower "
                          "data.train_subset or pass an .npz as data.extra_data")
    lab = copy.deepcopy(cfg)
    lab.method, lab.out_dir, lab.perturbation.name = "standard", str(run_dir), "none"
    lab.resume = (run_dir / "config.yaml").is_file()  # trained before: reuse it
    lab.epochs, lab.optim.schedule, lab.optim.milestones = cfg.data.self_label_epochs, "cosine", []
    lab.data.extra_data = None
    lab.eval.steps, lab.eval.flatness_every, lab.progress = 0, 0, False
    labeller = Trainer(lab, splits=Splits(splits.train, splits.val, splits.test, splits.info))
    labeller.fit()
    if labeller.dist.enabled:  # rank 0 wrote the labeller's checkpoint; every rank reads it
        torch.distributed.barrier()
    model = load(run_dir / "best.safetensors", device=labeller.device)
    labels, _ = pseudo_label(model, splits.unused.images, device=labeller.device)
    agreement = (labels == splits.unused.labels).float().mean().item()
    if labeller.dist.is_main:
        report = {"labelled": len(splits.train), "pseudo_labelled": len(labels),
                  "agreement_with_hidden_labels": agreement}
        (run_dir / "pseudo_labels.json").write_text(json.dumps(report) + "\n")
        if cfg.progress:
            print(f"self-training: a standard {cfg.model} trained on {len(splits.train)} labels "
                  f"labelled {len(labels)} more images ({100 * agreement:.1f}% agree with their "
                  f"hidden labels)", file=sys.stderr)
    return ArrayDataset(splits.unused.images, labels, splits.info.num_classes)


def dry_run(cfg, timed_steps: int = 3) -> tuple[str, str]:
    """``--dry-run``'s checks and estimate: the run's parts built as the run builds them (the
    data read and checked, the device opened, the model made), then ``timed_steps`` training
    steps (after one untimed step that pays the one-time costs; with and without AWP where the
    run has both) and one evaluation batch are timed on a throw-away trainer. Returns
    ``(plan line, estimate line)``; a check that fails raises its one-line error."""
    d = cfg.data
    splits = load_splits(d.name, d.data_dir, d.val_size, d.split_seed, d.train_subset,
                         d.image_size)
    if d.extra_data == "auto":  # priced with the images the labeller would label
        splits.extra = splits.unused
    trainer = Trainer(cfg, splits=splits)
    plan = plan_line(trainer.cfg, trainer.splits, trainer.steps_per_epoch)
    if d.extra_data == "auto":
        plan += (f"; first, a standard labeller trains {d.self_label_epochs} epochs on the "
                 f"labelled images (not in the estimate)")
    return plan, estimate_line(measure(trainer, timed_steps), 0, trainer.cfg.epochs) + (
        f" (from {timed_steps} timed steps and one evaluation batch)")
