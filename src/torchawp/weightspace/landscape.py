"""Weight loss landscapes of the *robust* loss (the AWP paper's Fig. 1; Li et al., NeurIPS 2018,
arXiv 1712.09913).

``g(a) = rho(w + a * d)`` for ``a`` in [-1, 1], with ``d`` a Gaussian direction that is
*filter-normalised*: every output filter (row) of ``d`` is scaled to the norm of the same filter
of ``w``, and 1-D tensors (biases, BatchNorm affine parameters) get 0. ``rho`` is the robust loss:
the attack is re-run against the perturbed model at every point, in eval mode (BatchNorm running
statistics untouched). The weights are restored bit-exactly after every measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..attacks import Attack
from ..evaluation.accuracy import evaluate
from ..perturb import add_, exact_snapshot


def filter_normalized_direction(model: nn.Module, generator: Optional[torch.Generator] = None
                                ) -> list[torch.Tensor]:
    """One direction per parameter of ``model`` (same order as ``model.parameters()``): Gaussian,
    each output filter scaled to the norm of the weight's filter; 1-D tensors are zero."""
    direction = []
    for p in model.parameters():
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, device="cpu", dtype=torch.float32).to(p)
        w_norm = p.detach().flatten(1).norm(dim=1)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        direction.append(d * (w_norm / d_norm).view(-1, *([1] * (p.dim() - 1))))
    return direction


def robust_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Optional[Attack],
                batch_size: int = 500, seed: int = 0) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``model`` on ``attack(x)`` (clean if ``attack`` is None),
    eval mode, the attack's randomness seeded so that every call is comparable."""
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    if attack is None:
        m = evaluate(model, (x, y), batch_size=batch_size, generator=gen)
        return m["clean_loss"], m["clean_acc"]
    m = evaluate(model, (x, y), [("rho", attack)], batch_size=batch_size, generator=gen,
                 clean=False)
    return m["rho_loss"], m["rho_acc"]


def _loss_at(model, params, w, steps, x, y, attack, batch_size, seed):
    """Robust loss and accuracy at ``w + sum(coeff * direction)``, from the exact saved ``w``."""
    w.restore()
    for direction, coeff in steps:
        add_(params, direction, alpha=coeff)
    return robust_loss(model, x, y, attack, batch_size, seed)


@dataclass
class Landscape:
    """``alphas`` (points), ``loss[d][i]`` and ``acc[d][i]`` per direction ``d``; for 2-D,
    ``loss[i][j]`` over ``alphas x betas``."""

    alphas: list[float]
    loss: list[list[float]]
    acc: list[list[float]]
    betas: list[float] = field(default_factory=list)


def landscape_1d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Optional[Attack],
                 directions: int = 3, points: int = 21, radius: float = 1.0, seed: int = 0,
                 batch_size: int = 500,
                 progress: Optional[Callable[[int, int], None]] = None) -> Landscape:
    """Robust loss along ``directions`` filter-normalised random directions (seeded, so two
    models compared with the same seed get the same Gaussian draws); ``progress(done,
    total)`` after every point."""
    params = list(model.parameters())
    alphas = torch.linspace(-radius, radius, points).tolist()
    gen = torch.Generator().manual_seed(seed)
    losses, accs = [], []
    with exact_snapshot(params) as w:
        for k in range(directions):
            d = filter_normalized_direction(model, gen)
            row = []
            for i, a in enumerate(alphas):
                row.append(_loss_at(model, params, w, [(d, a)], x, y, attack, batch_size, seed))
                if progress is not None:
                    progress(k * points + i + 1, directions * points)
            losses.append([loss for loss, _ in row])
            accs.append([acc for _, acc in row])
    return Landscape(alphas, losses, accs)


def landscape_2d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Optional[Attack],
                 points: int = 11, radius: float = 1.0, seed: int = 0,
                 batch_size: int = 500,
                 progress: Optional[Callable[[int, int], None]] = None) -> Landscape:
    """Robust loss on the plane ``w + a * d1 + b * d2`` (two filter-normalised directions);
    ``progress(done, total)`` after every row of the grid."""
    params = list(model.parameters())
    grid = torch.linspace(-radius, radius, points).tolist()
    gen = torch.Generator().manual_seed(seed)
    d1, d2 = filter_normalized_direction(model, gen), filter_normalized_direction(model, gen)
    losses, accs = [], []
    with exact_snapshot(params) as w:
        for k, a in enumerate(grid):
            row = [_loss_at(model, params, w, [(d1, a), (d2, b)], x, y, attack,
                            batch_size, seed) for b in grid]
            if progress is not None:
                progress((k + 1) * points, points * points)
            losses.append([loss for loss, _ in row])
            accs.append([acc for _, acc in row])
    return Landscape(grid, losses, accs, betas=grid)


def plot_landscapes_1d(curves: Sequence[tuple[str, Landscape]], path, title: str = "") -> None:
    """Mean robust loss (line) and min-max over directions (band) for each labelled model."""
    import matplotlib  # plotting only: matplotlib loads in about a second, so on use

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.0), dpi=120)
    for label, ls in curves:
        loss = torch.tensor(ls.loss)
        ax.plot(ls.alphas, loss.mean(0), label=label)
        ax.fill_between(ls.alphas, loss.min(0).values, loss.max(0).values, alpha=0.2)
    ax.set_xlabel("a (filter-normalised direction)")
    ax.set_ylabel("robust loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_landscape_2d(label: str, ls: Landscape, path) -> None:
    import matplotlib  # plotting only: matplotlib loads in about a second, so on use

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.0), dpi=120)
    cs = ax.contour(ls.alphas, ls.betas, torch.tensor(ls.loss).T.numpy(), levels=15)
    ax.clabel(cs, fontsize=6)
    ax.set_xlabel("a (direction 1)")
    ax.set_ylabel("b (direction 2)")
    ax.set_title(f"robust loss: {label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def landscape_summary(curves: dict, kind: str, radius: float) -> str:
    """``torchawp landscape``'s lines: per split (``curves``: split -> ``[(label,
    Landscape)]``) and checkpoint, the loss at ``-radius``, 0 and ``radius``, averaged over
    the directions."""
    lines = [f"{kind} at a = -{radius:g}, 0, {radius:g} (mean over directions):"]
    for split, items in curves.items():
        for label, ls in items:
            mean = [sum(ls.loss[d][i] for d in range(len(ls.loss))) / len(ls.loss)
                    for i in (0, len(ls.alphas) // 2, -1)]
            lines.append(f"  {label:<28} {split:<5} " + "  ".join(f"{v:.3f}" for v in mean))
    return "\n".join(lines)
