"""Projected gradient descent (Madry et al., ICLR 2018, arXiv 1706.06083)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..perturb import model_mode
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
        mask: restrict the perturbation to a pixel region: a tensor broadcastable to the
            images (1 = may change), or a region from :mod:`torchawp.attacks.regional`
            (``centre(0.3)``); outside it the images stay exactly as they were.
        targeted: ``y`` are target classes and the loss is descended (default: ascended).

    ``eps=None`` removes the ball (only [0, 1] bounds the image; needs ``random_start="none"``).

    Example::

        pgd20 = PGD(eps=8/255, step_size=2/255, steps=20)
        x_adv = pgd20(model, x, y)
    """

    def __init__(self, norm: str = "linf", eps: float = 8 / 255, step_size: float = 2 / 255,
                 steps: int = 10, random_start: str = "uniform", restarts: int = 1,
                 loss: str = "ce", bn_mode: str = "eval", clamp_start: bool = True,
                 mask=None, targeted: bool = False):
        super().__init__(norm, eps, bn_mode)
        self.clamp_start = clamp_start
        if random_start not in ("uniform", "normal", "none"):
            raise ValueError(f"random_start must be uniform, normal or none (got {random_start!r})")
        if eps is None and random_start != "none":
            raise ValueError("eps=None (no ball) needs random_start='none'")
        if targeted and restarts > 1:
            raise ValueError("a targeted PGD takes one restart")
        self.mask = mask
        self.targeted = bool(targeted)
        if steps < 0 or restarts < 1:
            raise ValueError(f"need steps >= 0 and restarts >= 1 (got {steps}, {restarts})")
        self.step_size = float(step_size)
        self.steps = int(steps)
        self.random_start = random_start
        self.restarts = int(restarts)
        self.loss = loss

    def _mask_for(self, x):
        """The mask as a 0/1 tensor on ``x``'s device (None: every pixel)."""
        if self.mask is None:
            return None
        mask = self.mask.mask(*x.shape[-2:]) if hasattr(self.mask, "mask") else self.mask
        return torch.as_tensor(mask, device=x.device).to(x.dtype)

    def _start(self, x, generator, mask=None):
        """The starting point: x plus the random start (inside the mask), clipped to [0, 1]
        (``clamp_start``)."""
        if self.random_start == "uniform":
            delta = self.ball.random_start(x, generator)
        elif self.random_start == "normal":
            delta = 0.001 * torch.randn(x.shape, generator=generator, device=x.device,
                                        dtype=x.dtype)
        else:
            return x.clone()
        if mask is not None:
            delta = delta * mask
        return (x + delta).clamp(0, 1) if self.clamp_start else x + delta

    def _run(self, model, x, y, clean_probs, generator, stop=None, only=None, params=()):
        """``steps`` iterations from the start (drawn for the whole batch). With ``stop``
        (``stop(x_adv, index) -> bool`` per example, asked before every step) an example that
        reports done is left as it is and later steps work on the others only; with ``only``
        the examples outside it are never stepped and come back as they were. With ``params``
        the last iteration's backward also gives the summed loss's gradient with respect to
        them: returns ``(x_adv, those gradients)``."""
        mask = self._mask_for(x)
        x_adv = self._start(x, generator, mask)
        if only is not None:
            x_adv = torch.where(only.view(-1, *[1] * (x.dim() - 1)), x_adv, x)
        active = (torch.arange(len(x), device=x.device) if only is None
                  else only.nonzero().flatten())
        for i in range(self.steps):
            if stop is not None:
                with torch.no_grad():
                    active = active[~stop(x_adv[active], active)]
            if len(active) == 0:
                break
            sub = len(active) < len(x)
            xs, x0 = (x_adv[active], x[active]) if sub else (x_adv, x)
            ys = y[active] if sub else y
            ms = (mask[active] if sub and mask is not None and mask.dim() == x.dim()
                  and mask.shape[0] == len(x) else mask)  # a per-example mask follows
            probs = clean_probs[active] if sub and clean_probs is not None else clean_probs
            xs.requires_grad_(True)  # the gradient is taken w.r.t. the input only
            loss = attack_loss(self.loss, model(xs), ys, probs).sum()
            wanted = list(params) if i == self.steps - 1 else []
            grad, *weight_grads = torch.autograd.grad(-loss if self.targeted else loss,
                                                      [xs] + wanted, allow_unused=True)
            if ms is not None:
                grad = grad * ms
            delta = self.ball.project(self.ball.step(xs.detach() - x0, grad, self.step_size))
            if sub:
                x_adv[active] = (x0 + delta).clamp(0, 1)
            else:
                x_adv = (x0 + delta).clamp(0, 1)
        return (x_adv.detach(), weight_grads) if params else x_adv.detach()

    def with_weight_grads(self, model, x, y, params, generator=None):
        """``(x_adv, grads)``: the adversarial examples, and the gradient of the last
        iteration's summed loss (at ``x^(K-1)``, in the attack's model mode) with respect to
        ``params``, from the backward that gives that iteration its input gradient. AWP's
        approximate ascent (``awp.ascent: last-pgd-step``) climbs it instead of taking its own
        forward and backward. One restart, a ``train`` or ``eval`` mode and at least one step."""
        if (self.restarts != 1 or self.steps < 1 or self.bn_mode == "train-update"
                or self.loss == "kl"):
            raise ValueError("weight gradients come from one restart of at least one step of a "
                             "cross-entropy or margin PGD that does not update BatchNorm")
        with model_mode(model, self.bn_mode), torch.enable_grad():
            x_adv, grads = self._run(model, x.detach(), y, None, generator, params=params)
        return x_adv.detach(), grads

    def perturb(self, model, x, y, generator=None, only=None):
        clean_probs = None
        if self.loss == "kl":
            with torch.no_grad():
                clean_probs = F.softmax(model(x), dim=1).float()
        if self.restarts == 1:
            x_adv = self._run(model, x, y, clean_probs, generator, only=only)
            if self.bn_mode == "train-update":  # Rice et al. score even a single restart
                with torch.no_grad():
                    model(x_adv)
            return x_adv
        best, best_score = x.clone(), torch.full((x.shape[0],), -float("inf"), device=x.device)
        for _ in range(self.restarts):
            x_adv = self._run(model, x, y, clean_probs, generator, only=only)
            with torch.no_grad():
                logits = model(x_adv)
                score = attack_loss(self.loss, logits, y, clean_probs).float()
                if self.loss != "kl":  # a misclassifying restart beats any correct one
                    score = score + 1e6 * (logits.argmax(1) != y).float()
                better = score > best_score
                best[better] = x_adv[better]
                best_score = torch.where(better, score, best_score)
        return best
