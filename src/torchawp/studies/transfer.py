"""Transfer of adversarial examples from a source model to a target model: the rate at which
examples crafted on one model fool another, and how large the perturbations were."""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import nn

from ..attacks import Attack
from ..attacks.regional import Region, Regional
from ..evaluation.accuracy import EVAL_BATCH_SIZE, EVAL_SEED, predict


def _median(values: torch.Tensor) -> Optional[float]:
    return float(values.median()) if len(values) else None


def transfer(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
             attack: Attack, batch_size: int = EVAL_BATCH_SIZE, seed: int = EVAL_SEED) -> dict:
    """Craft ``attack`` on ``source`` for the images both models classify correctly, and
    measure on ``target``.

    Returns the number of images, how many both models got right (the attacked ones), the
    ``transfer_rate`` (fraction of attacked images the target now misclassifies), the
    ``source_rate`` (the same on the source), and over the transferred examples the medians of
    L0 (the fraction of pixel locations changed in any channel), L2 and L-inf of ``x_adv - x``
    in [0, 1] pixel units. Fractions in [0, 1].
    """
    device = next(source.parameters()).device
    correct = (predict(source, x) == y) & (predict(target, x) == y)
    xs, ys = x[correct], y[correct]
    gen = torch.Generator(device).manual_seed(seed)
    fooled, fooled_source, l0, l2, linf = [], [], [], [], []
    for start in range(0, len(ys), batch_size):
        xb = xs[start:start + batch_size].to(device)
        yb = ys[start:start + batch_size].to(device)
        x_adv = attack(source, xb, yb, gen)
        fooled.append(predict(target, x_adv) != yb.cpu())
        fooled_source.append(predict(source, x_adv) != yb.cpu())
        diff = (x_adv - xb).detach().cpu()
        l0.append((diff.abs().amax(1) > 0).flatten(1).float().mean(1))
        l2.append(diff.flatten(1).norm(dim=1))
        linf.append(diff.flatten(1).abs().amax(1))
    cat = lambda parts: torch.cat(parts) if parts else torch.zeros(0)  # noqa: E731
    fooled_all = cat(fooled).bool()
    n = len(ys)
    return {"n": len(y), "attacked": n,
            "transfer_rate": float(fooled_all.float().mean()) if n else None,
            "source_rate": float(cat(fooled_source).float().mean()) if n else None,
            "median_l0": _median(cat(l0)[fooled_all]),
            "median_l2": _median(cat(l2)[fooled_all]),
            "median_linf": _median(cat(linf)[fooled_all])}


def regional_sweep(source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   regions: list[Region], steps: int = 250, seed: int = EVAL_SEED,
                   log: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Ozbulak et al.'s measurement: for each region, the regional attack on ``source`` (each
    image stopping once ``target``'s prediction changes) and :func:`transfer`'s row, with the
    region, its family, its actual share of the image and the seconds it took."""
    rows = []
    for region in regions:
        start = time.perf_counter()
        r = transfer(source, target, x, y, Regional(region, stop_model=target, steps=steps),
                     seed=seed)
        r.update(seconds=time.perf_counter() - start, region=str(region), kind=region.kind,
                 area=region.actual_area(*x.shape[-2:]))
        rows.append(r)
        if log is not None:
            log(f"{region}: transfer {100 * (r['transfer_rate'] or 0):.1f}% of "
                f"{r['attacked']} ({r['seconds']:.1f} s)")
    return rows
