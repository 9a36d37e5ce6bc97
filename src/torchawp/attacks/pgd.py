"""Projected gradient descent (Madry et al., ICLR 2018, arXiv 1706.06083)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Attack, attack_loss


class PGD(Attack):
    """PGD on the L-inf or L2 ball, in [0, 1] pixel space, with random restarts.

    Each step ascends the per-example ``loss`` with respect to the input only, steps with the
    threat model's rule (sign for L-inf, normalised gradient for L2), projects onto the ball and
    clips to [0, 1]. With several restarts each example keeps the worst restart (misclassified
    first, then highest loss).

    Args:
        norm: ``"linf"`` (default) or ``"l2"``.
        eps: radius, pixel units (default 8/255).
        step_size: step, pixel units (default 2/255).
        steps: iterations (default 10; PGD-20/100 for evaluation).
        random_start: ``"uniform"`` in the ball (default), ``"normal"`` (``0.001 * N(0, 1)``, the
            TRADES/MART start) or ``"none"``.
        restarts: independent runs; the per-example worst is returned (default 1).
        loss: ``"ce"`` (default), ``"margin"`` (CW-inf) or ``"kl"`` (the TRADES inner problem,
            ``KL(f(x) || f(x'))``; labels unused).
        bn_mode: model mode while crafting, ``"eval"`` (default), ``"train"`` or
            ``"train-update"`` (Rice et al.'s loop: also the loss forward that scores each
            restart runs, updating BatchNorm statistics like every other forward).
        clamp_start: clip the random start into [0, 1] (default); the authors' TRADES/MART
            code takes the first gradient at the unclipped ``x + 0.001 N(0, 1)``.

    Example::

        pgd20 = PGD(eps=8/255, step_size=2/255, steps=20)
        x_adv = pgd20(model, x, y)
    """

    def __init__(self, norm: str = "linf", eps: float = 8 / 255, step_size: float = 2 / 255,
                 steps: int = 10, random_start: str = "uniform", restarts: int = 1,
                 loss: str = "ce", bn_mode: str = "eval", clamp_start: bool = True):
        super().__init__(norm, eps, bn_mode)
        self.clamp_start = clamp_start
        if random_start not in ("uniform", "normal", "none"):
            raise ValueError(f"random_start must be uniform, normal or none (got {random_start!r})")
        if steps < 0 or restarts < 1:
            raise ValueError(f"need steps >= 0 and restarts >= 1 (got {steps}, {restarts})")
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.random_start = random_start
        self.restarts = int(restarts)
        self.loss = loss

    def _start(self, x, generator):
        """The starting point: x plus the random start, clipped to [0, 1] (``clamp_start``)."""
        if self.random_start == "uniform":
            delta = self.ball.random_start(x, generator)
        elif self.random_start == "normal":
            delta = 0.001 * torch.randn(x.shape, generator=generator, device=x.device,
                                        dtype=x.dtype)
        else:
            return x.clone()
        return (x + delta).clamp(0, 1) if self.clamp_start else x + delta

    def _run(self, model, x, y, clean_probs, generator):
        x_adv = self._start(x, generator)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)  # the gradient is taken w.r.t. the input only
            loss = attack_loss(self.loss, model(x_adv), y, clean_probs).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            delta = self.ball.project(self.ball.step(x_adv.detach() - x, grad, self.step_size))
            x_adv = (x + delta).clamp(0, 1)
        return x_adv.detach()

    def perturb(self, model, x, y, generator=None):
        clean_probs = None
        if self.loss == "kl":
            with torch.no_grad():
                clean_probs = F.softmax(model(x), dim=1).float()
        if self.restarts == 1:
            x_adv = self._run(model, x, y, clean_probs, generator)
            if self.bn_mode == "train-update":  # Rice et al. score even a single restart
                with torch.no_grad():
                    model(x_adv)
            return x_adv
        best, best_score = x.clone(), torch.full((x.shape[0],), -float("inf"), device=x.device)
        for _ in range(self.restarts):
            x_adv = self._run(model, x, y, clean_probs, generator)
            with torch.no_grad():
                logits = model(x_adv)
                score = attack_loss(self.loss, logits, y, clean_probs).float()
                if self.loss != "kl":  # a misclassifying restart beats any correct one
                    score = score + 1e6 * (logits.argmax(1) != y).float()
                better = score > best_score
                best[better] = x_adv[better]
                best_score = torch.where(better, score, best_score)
        return best
