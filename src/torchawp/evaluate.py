"""Clean and robust accuracy of a model on a dataset (eval mode, per-example worst case)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import Attack
from .data import ArrayDataset, to_float
from .runtime import all_reduce_sum


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayDataset, attacks: Sequence[tuple[str, Attack]] = (),
             batch_size: int = 256, max_examples: Optional[int] = None,
             generator: Optional[torch.Generator] = None, device=None, rank: int = 0,
             world_size: int = 1) -> dict[str, float]:
    """Accuracy and mean loss, clean and under each attack, in eval mode.

    Returns ``{"clean_acc", "clean_loss", "<name>_acc", "<name>_loss", ..., "robust_acc",
    "n"}`` where ``robust_acc`` counts an example as robust only if every attack fails on it
    (the per-example worst case). Accuracies are fractions in [0, 1]. The first
    ``max_examples`` images are used; under DDP each rank takes a shard and sums are
    all-reduced. Counts stay on the device until the end (one host sync).
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    n = len(data) if max_examples is None else min(max_examples, len(data))
    names = ["clean"] + [name for name, _ in attacks]
    sums = torch.zeros(2 * len(names) + 2, dtype=torch.float64, device=device)
    index = torch.arange(rank, n, world_size)
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size].to(data.images.device)
        x = to_float(data.images[idx]).to(device)
        y = data.labels[idx].to(device)
        robust = torch.ones_like(y, dtype=torch.bool)
        for i, name in enumerate(names):
            x_in = x if name == "clean" else attacks[i - 1][1](model, x, y, generator)
            logits = model(x_in).float()
            correct = logits.argmax(1) == y
            robust &= correct
            sums[2 * i] += correct.sum()
            sums[2 * i + 1] += F.cross_entropy(logits, y, reduction="sum")
        sums[-2] += robust.sum()
        sums[-1] += len(y)
    model.train(was_training)
    values = all_reduce_sum(sums).tolist()
    total = max(values[-1], 1.0)
    out = {}
    for i, name in enumerate(names):
        out[f"{name}_acc"] = values[2 * i] / total
        out[f"{name}_loss"] = values[2 * i + 1] / total
    out["robust_acc"] = values[-2] / total
    out["n"] = int(values[-1])
    return out


ATTACK_PATTERN = "fgsm, pgdK (CE), cwK (margin), e.g. pgd20, pgd100, cw20"


def build_attack(name: str, norm: str, eps: float, step_size: float, restarts: int = 1) -> Attack:
    """An evaluation attack by name: ``fgsm``, ``pgd<K>`` (CE) or ``cw<K>`` (CW-inf: PGD on the
    margin loss), eval mode, on the given threat model."""
    from .attacks import FGSM, PGD

    if name == "fgsm":
        return FGSM(norm, eps)
    for prefix, loss in (("pgd", "ce"), ("cw", "margin")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return PGD(norm, eps, step_size, int(name[len(prefix):]), restarts=restarts,
                       loss=loss)
    from .errors import ConfigError
    raise ConfigError(f"unknown attack {name!r}; use {ATTACK_PATTERN}")


def evaluate_checkpoint(path, which: str = "best", attacks: Sequence[str] = ("pgd20",),
                        n_examples: Optional[int] = None, device: str = "auto",
                        data_dir: Optional[str] = None, batch_size: int = 256,
                        restarts: int = 1, eps: Optional[float] = None,
                        norm: Optional[str] = None, seed: int = 0) -> dict:
    """Evaluate a saved checkpoint on its dataset's test set (threat model from its config
    unless ``eps``/``norm`` are given). Returns the :func:`evaluate` dict plus the epoch."""
    from .checkpoint import load
    from .data import load_splits
    from .runtime import resolve_device

    dev = resolve_device(device)
    model = load(path, which=which, device=dev)
    meta = model.checkpoint_meta
    cfg = meta.get("config") or {}
    data_cfg, attack_cfg = cfg.get("data", {}), cfg.get("attack", {})
    norm = norm or attack_cfg.get("norm", "linf")
    eps = eps if eps is not None else attack_cfg.get("eps", 8 / 255)
    step_size = attack_cfg.get("step_size", eps / 4) * (eps / attack_cfg.get("eps", eps) or 1)
    splits = load_splits(data_cfg.get("name", "digits"), data_dir or data_cfg.get("data_dir"))
    built = [(name, build_attack(name, norm, eps, step_size, restarts)) for name in attacks]
    gen = torch.Generator(dev).manual_seed(seed)
    out = evaluate(model, splits.test, built, batch_size=batch_size, max_examples=n_examples,
                   generator=gen, device=dev)
    out.update(epoch=meta.get("epoch"), norm=norm, eps=eps, step_size=step_size)
    return out
