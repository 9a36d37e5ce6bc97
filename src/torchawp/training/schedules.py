"""The optimizer and its learning-rate schedule: torch's own, stepped every iteration."""

from __future__ import annotations

import torch

from ..config import TrainConfig


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with the config's momentum (Nesterov or not) and weight decay."""
    o = cfg.optim
    return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                           weight_decay=o.weight_decay, nesterov=o.nesterov)


def build_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """torch's own schedulers, stepped every iteration (milestones given in epochs)."""
    o = cfg.optim
    if o.schedule == "piecewise":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [m * steps_per_epoch for m in o.milestones], gamma=o.lr_decay)
    if o.schedule == "cosine":
        total, warmup = cfg.epochs * steps_per_epoch, round(o.warmup_epochs * steps_per_epoch)
        if not warmup:
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
        # linear warm-up from lr / warmup to lr, then cosine to 0 over the remaining steps
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [
            torch.optim.lr_scheduler.LinearLR(optimizer, 1 / warmup, 1.0, warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total - warmup)], [warmup])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
