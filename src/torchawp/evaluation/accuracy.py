"""Clean and robust accuracy of a model on a dataset, in eval mode: the per-epoch evaluation of
a training run (:func:`evaluate`) and per-example correctness with resumable state
(:func:`correct_mask`), which the checkpoint suite (:mod:`torchawp.evaluation.suite`) builds on."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import Attack
from ..io.checkpoint import atomic_write
from ..data import ArrayDataset, Splits, to_float
from ..perturb import model_mode
from ..runtime import all_reduce_sum

# The evaluation protocol shared by the per-epoch evaluation of a training run and by
# ``torchawp eval``: the same batches and the same attack seed give the same numbers.
EVAL_BATCH_SIZE = 256
EVAL_SEED = 0


@torch.no_grad()
def evaluate(model: nn.Module, data, attacks: Sequence[tuple[str, Attack]] = (),
             batch_size: int = EVAL_BATCH_SIZE, max_examples: Optional[int] = None,
             generator: Optional[torch.Generator] = None, device=None, rank: int = 0,
             world_size: int = 1, clean: bool = True,
             should_stop: Optional[Callable[[], bool]] = None,
             on_batch: Optional[Callable[[int], None]] = None) -> Optional[dict[str, float]]:
    """Accuracy and mean loss, clean and under each attack, in eval mode.

    ``data`` is an :class:`ArrayDataset` or a pair ``(x, y)`` with ``x`` in [0, 1]. Returns
    ``{"clean_acc", "clean_loss", "<name>_acc", "<name>_loss", ..., "robust_acc", "n"}`` where
    ``robust_acc`` counts an example as robust only if it is classified correctly clean and
    under every attack (the per-example worst case). Accuracies are fractions in [0, 1]. The
    first ``max_examples`` images are used; under DDP each rank takes a shard and sums are
    all-reduced. Counts stay on the device until the end (one host sync). ``clean=False``
    skips the clean pass. ``should_stop`` is asked after every batch; when it says yes the
    evaluation is abandoned and None returned. ``on_batch(n)`` hears of every batch of ``n``
    images (progress). The model's modes are restored afterwards.
    """
    images, labels = (data.images, data.labels) if isinstance(data, ArrayDataset) else data
    device = device or next(model.parameters()).device
    n = len(labels) if max_examples is None else min(max_examples, len(labels))
    names = (["clean"] if clean else []) + [name for name, _ in attacks]
    attack_of = dict(attacks)
    sums = torch.zeros(2 * len(names) + 2, dtype=torch.float64, device=device)
    index = torch.arange(rank, n, world_size)
    with model_mode(model, "eval"):
        for start in range(0, len(index), batch_size):
            idx = index[start:start + batch_size].to(images.device)
            x = to_float(images[idx]).to(device)
            y = labels[idx].to(device)
            robust = torch.ones_like(y, dtype=torch.bool)
            for i, name in enumerate(names):
                x_in = x if name == "clean" else attack_of[name](model, x, y, generator)
                logits = model(x_in).float()
                correct = logits.argmax(1) == y
                robust &= correct
                sums[2 * i] += correct.sum()
                sums[2 * i + 1] += F.cross_entropy(logits, y, reduction="sum")
            sums[-2] += robust.sum()
            sums[-1] += len(y)
            if on_batch is not None:
                on_batch(len(y))
            if should_stop is not None and should_stop():
                return None
    values = all_reduce_sum(sums).tolist()
    total = max(values[-1], 1.0)
    out = {}
    for i, name in enumerate(names):
        out[f"{name}_acc"] = values[2 * i] / total
        out[f"{name}_loss"] = values[2 * i + 1] / total
    out["robust_acc"] = values[-2] / total
    out["n"] = int(values[-1])
    return out


def evaluate_splits(model: nn.Module, splits: Splits, attack: Optional[Attack],
                    which: Sequence[str] = ("train", "val", "test"), *, train_examples: int,
                    max_examples: Optional[int] = None, device=None, rank: int = 0,
                    world_size: int = 1, should_stop: Optional[Callable[[], bool]] = None,
                    on_batch: Optional[Callable[[int], None]] = None) -> Optional[dict]:
    """A training run's per-epoch metrics: clean and (with ``attack``) robust accuracy and loss
    of the first ``train_examples`` training images (at the current weights, eval mode), and of
    ``val`` and ``test`` (their first ``max_examples``), keyed ``{split}_clean_acc``,
    ``{split}_robust_loss`` ..., plus the ``gap`` when train and test are both measured. Each
    split's attack starts from seed :data:`EVAL_SEED` in batches of :data:`EVAL_BATCH_SIZE`:
    the protocol of ``torchawp eval``. None if ``should_stop`` interrupted it; ``on_batch(n)``
    hears of every evaluated batch of ``n`` images."""
    row = {}
    attacks = [("pgd", attack)] if attack is not None else []
    limits = {"train": train_examples, "val": max_examples, "test": max_examples}
    for split in which:
        data = getattr(splits, split)
        if len(data) == 0 or limits[split] == 0:
            continue
        gen = torch.Generator(device).manual_seed(EVAL_SEED)
        m = evaluate(model, data, attacks, batch_size=EVAL_BATCH_SIZE,
                     max_examples=limits[split], generator=gen, device=device, rank=rank,
                     world_size=world_size, should_stop=should_stop, on_batch=on_batch)
        if m is None:
            return None
        row[f"{split}_clean_acc"], row[f"{split}_clean_loss"] = m["clean_acc"], m["clean_loss"]
        if attacks:
            row[f"{split}_robust_acc"], row[f"{split}_robust_loss"] = m["pgd_acc"], m["pgd_loss"]
    if "train_robust_acc" in row and "test_robust_acc" in row:
        row["gap"] = row["train_robust_acc"] - row["test_robust_acc"]
    return row


@torch.no_grad()
def correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Optional[Attack],
                 batch_size: int = 256, generator: Optional[torch.Generator] = None,
                 state_file=None, only: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-example correctness (bool, on CPU) under ``attack`` (None: clean), eval mode.

    With ``only`` (bool per example) just those examples are attacked and classified, the
    others count as incorrect; batches and random draws stay those of the full set, so an
    attacked example gets the result it gets without ``only``. With ``state_file`` the mask
    is saved after every batch and a rerun continues where an interrupted one stopped
    (AutoAttack on a large model takes hours).
    """
    mask = torch.zeros(len(y), dtype=torch.bool)
    done = 0
    if state_file is not None and state_file.is_file():
        saved = torch.load(state_file, weights_only=True)
        if len(saved["mask"]) == len(y):
            mask, done = saved["mask"], int(saved["done"])
    device = next(model.parameters()).device
    with model_mode(model, "eval"):
        for start in range(done, len(y), batch_size):
            xb = x[start:start + batch_size].to(device)
            yb = y[start:start + batch_size].to(device)
            sel = None if only is None else only[start:start + batch_size]
            if attack is not None:
                xb = (attack(model, xb, yb, generator) if sel is None else
                      attack(model, xb, yb, generator, only=sel))
            if sel is None:
                mask[start:start + len(yb)] = (model(xb).argmax(1) == yb).cpu()
            elif bool(sel.any()):
                keep = sel.to(device)
                mask[start:start + len(yb)][sel] = (model(xb[keep]).argmax(1) == yb[keep]).cpu()
            if state_file is not None:
                state = {"mask": mask, "done": start + len(yb)}
                atomic_write(state_file, lambda tmp: torch.save(state, tmp))
    return mask


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Eval-mode predicted classes (on the CPU) of ``x``, in batches."""
    device = next(model.parameters()).device
    with model_mode(model, "eval"):
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, len(x), batch_size)] or
                         [torch.zeros(0, dtype=torch.long)])
