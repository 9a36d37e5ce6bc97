"""Flatness of the robust loss in weight space (Stutz, Hein & Schiele, ICCV 2021,
arXiv 2104.04448).

Both measures perturb every parameter outside normalisation layers (weights and biases) inside a
per-tensor *relative* ball ``||nu_l|| <= xi * ||w_l||``, which makes them invariant to
rescaling layers (ReLU networks compute the same function after scaling one layer by ``c`` and
the next by ``1/c``):

* average-case: ``E_nu[rho(w + nu)] - rho(w)``, ``nu`` uniform on the relative sphere,
  ``xi = 0.5``, 10 samples, the attack re-run for every sample;
* worst-case: ``max_nu rho(w + nu) - rho(w)``, one ``nu`` shared by the whole evaluation set and
  optimised jointly with the adversarial inputs (normalised-gradient weight steps of relative
  size ``lr = 0.01``, projection onto the ball), ``xi = 7.5e-4``, 20 passes, 10 restarts.

``rho`` is the robust loss (PGD on the first 1,000 test images in the paper), or the clean loss
with ``attack=None``. Weights and BatchNorm buffers are bit-identical afterwards.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import Attack
from .landscape import robust_loss
from ..perturb import RelativeL2Ball, add_, exact_snapshot, model_mode, select_parameters


def _ball(params, xi: float, relative: bool) -> RelativeL2Ball:
    ball = RelativeL2Ball(params, xi)
    if not relative:  # absolute radius xi: the scale-dependent variant, for comparison
        ball.weight_norms = [torch.ones((), device=p.device) for p in params]
    return ball


def average_case_flatness(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          attack: Optional[Attack], xi: float = 0.5, samples: int = 10,
                          seed: int = 0, relative: bool = True, batch_size: int = 500,
                          progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """``{"flatness", "loss", "perturbed_losses"}``: mean increase of the robust loss under
    random relative weight noise on the sphere of radius ``xi``. ``progress(done, total)`` is
    called after every sample."""
    params = [p for _, p in select_parameters(model, "weights+biases")]
    ball = _ball(params, xi, relative)
    gen = torch.Generator().manual_seed(seed)
    base, _ = robust_loss(model, x, y, attack, batch_size, seed)
    losses = []
    with exact_snapshot(params) as w:
        for i in range(samples):
            add_(params, ball.sample(params, gen))
            losses.append(robust_loss(model, x, y, attack, batch_size, seed)[0])
            w.restore()
            if progress is not None:
                progress(i + 1, samples)
    return {"flatness": sum(losses) / len(losses) - base, "loss": base,
            "perturbed_losses": losses}


def worst_case_flatness(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        attack: Optional[Attack], xi: float = 7.5e-4, passes: int = 20,
                        restarts: int = 10, lr: float = 0.01, seed: int = 0,
                        relative: bool = True, batch_size: int = 500,
                        progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """``{"flatness", "loss", "restart_losses"}``: the largest robust-loss increase found by
    ascending a shared weight perturbation ``nu`` (jointly with the inputs) in the relative ball
    of radius ``xi``. Every restart starts from a random point on the sphere (seeded) and keeps
    the larger of its start and end losses, so the measure is never below the loss at its
    starting points. ``progress(done, total)`` is called after every pass of every restart."""
    params = [p for _, p in select_parameters(model, "weights+biases")]
    ball = _ball(params, xi, relative)
    gen = torch.Generator().manual_seed(seed)
    device = params[0].device
    attack_gen = torch.Generator(device).manual_seed(seed)
    base, _ = robust_loss(model, x, y, attack, batch_size, seed)
    best_per_restart = []
    with exact_snapshot(params) as w, model_mode(model, "eval"):
        for r in range(restarts):
            nu = ball.sample(params, gen)
            add_(params, nu)
            best = robust_loss(model, x, y, attack, batch_size, seed)[0]
            w.restore()
            for p in range(passes):
                if progress is not None and p:
                    progress(r * passes + p, restarts * passes)
                for start in range(0, len(y), batch_size):
                    xb = x[start:start + batch_size].to(device)
                    yb = y[start:start + batch_size].to(device)
                    add_(params, nu)
                    if attack is not None:
                        xb = attack(model, xb, yb, attack_gen)  # inputs at the current w + nu
                    with torch.enable_grad():
                        loss = F.cross_entropy(model(xb), yb)
                        grads = torch.autograd.grad(loss, params)
                    w.restore()
                    with torch.no_grad():
                        nu = ball.project(torch._foreach_add(nu, ball.step(grads, lr)))
            add_(params, nu)
            best = max(best, robust_loss(model, x, y, attack, batch_size, seed)[0])
            w.restore()
            best_per_restart.append(best)
            if progress is not None:
                progress((r + 1) * passes, restarts * passes)
    return {"flatness": max(best_per_restart) - base, "loss": base,
            "restart_losses": best_per_restart}


def flatness_table(results: list[dict], kind: str) -> str:
    """``torchawp flatness``'s table: per checkpoint and split, the loss at ``w`` and the
    average- and worst-case flatness (``-`` where not measured) of the ``kind`` loss."""
    width = max(len("checkpoint"), *(len(r["checkpoint"]) for r in results)) + 2
    lines = [f"flatness of the {kind} (increase under weight perturbation; lower is flatter)",
             f"{'checkpoint':<{width}}{'split':<7}{'loss':>8}{'average':>10}{'worst':>10}"]
    for r in results:
        fmt = lambda k: f"{r[k]:.4f}" if k in r else "-"  # noqa: E731
        lines.append(f"{r['checkpoint']:<{width}}{r['split']:<7}{r['loss']:>8.4f}"
                     f"{fmt('average'):>10}{fmt('worst'):>10}")
    return "\n".join(lines)


def probe_flatness(net, splits, attack, samples: int, seed: int = 0) -> float:
    """The per-epoch probe of a training run (``eval.flatness_every``): average-case flatness
    (xi 0.5) of the robust loss on up to 500 validation images (test images without a split)."""
    x, y = (splits.val if len(splits.val) else splits.test).tensors(0, 500)
    return average_case_flatness(net, x, y, attack, xi=0.5, samples=samples,
                                 seed=seed)["flatness"]
