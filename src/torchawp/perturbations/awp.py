"""Adversarial Weight Perturbation (Wu, Xia & Wang, NeurIPS 2020, arXiv 2004.05884).

One AWP training step, with the semantics of the authors' code::

    awp = AWP(model, gamma=0.01)
    x_adv = attack(model, x, y)                                  # 1. adversarial inputs at w
    awp.perturb(lambda m: F.cross_entropy(m(x_adv), y))          # 2-3. w <- w + v
    loss = F.cross_entropy(model(x_adv), y)                      # 4. loss at w + v
    optimizer.zero_grad(); loss.backward(); optimizer.step()     #    step taken at w + v
    awp.restore()                                                #    w <- w - v

or ``with awp.perturbed(closure): ...`` around the unchanged backward and step.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from ..perturb import ParamFilter, RelativeL2Ball
from .base import Closure, WeightPerturbation


class AWP(WeightPerturbation):
    """Adversarial weight perturbation of a model, in place, without a proxy copy.

    ``perturb(closure)`` computes, **in train mode** and without changing BatchNorm running
    statistics, the gradient ``g`` of ``closure(model)`` (the method's adversarial loss) with
    respect to each selected tensor and adds ``v_l = gamma * ||w_l|| * g_l / (||g_l|| + 1e-20)``
    to it. The caller then computes the training loss at ``w + v``, steps its optimizer there,
    and calls :meth:`restore` to subtract ``v`` again. Parameter ``.grad`` fields are not touched
    by the ascent pass.

    Args:
        model: any ``nn.Module`` (DDP-wrapped or compiled models work; under
            ``torch.distributed`` the ascent gradient is averaged over ranks so every rank
            applies the same ``v``).
        gamma: relative size ``||v_l|| / ||w_l||``; 0.01 for AT-AWP, 0.005 for TRADES-AWP.
            ``gamma <= 0`` disables AWP (``perturb`` and ``restore`` do nothing).
        steps: ascent steps. 1 (the paper) is a single normalised step onto the sphere; with more
            steps each step has relative size ``step_size`` and ``v`` is projected back onto the
            ball after each.
        step_size: relative step for ``steps > 1`` (default ``2.5 * gamma / steps``).
        params: which tensors (see :func:`torchawp.perturb.select_parameters`); default the
            authors' rule, ``dim > 1`` tensors whose name contains ``weight``.
        scale: ``"layer"`` (the paper: one ball per tensor) or ``"global"`` (one ball, RWP).
        warmup_epochs: :meth:`applies_in` is False before this epoch.
        finite_only: replace a non-finite ``v`` (from a NaN/inf ascent loss) by zeros, so that
            :meth:`restore` returns exactly to ``w`` (costs one pass over the weights).
    """

    name = "awp"
    title = "AWP"
    summary = ("per-tensor ball gamma ||w_l||, 1 ascent step of the method's adversarial loss, "
               "conv/linear weights, step at w + v; Wu et al. 2020")

    def __init__(
        self,
        model: nn.Module,
        gamma: float = 0.01,
        steps: int = 1,
        step_size: Optional[float] = None,
        params: ParamFilter = "weights",
        scale: str = "layer",
        warmup_epochs: int = 0,
        finite_only: bool = False,
    ):
        if steps < 1:
            raise ValueError(f"AWP steps must be >= 1 (got {steps})")
        super().__init__(model, params, warmup_epochs, finite_only)
        self.gamma = float(gamma)
        self.steps = int(steps)
        self.step_size = step_size if step_size is not None else (
            self.gamma if steps == 1 else 2.5 * self.gamma / steps)
        self.scale = scale
        if self.gamma > 0 and not self.params:
            raise ValueError("AWP found no parameters to perturb with this filter")

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "AWP":
        w = cfg.awp
        return cls(model, gamma=w.gamma, steps=w.steps, scale=w.scale, params=w.params,
                   **cls.common(cfg))

    @property
    def enabled(self) -> bool:
        return self.gamma > 0

    def active(self, epoch: int) -> bool:
        """Deprecated name of :meth:`applies_in` (kept for one release)."""
        warnings.warn("AWP.active(epoch) is now AWP.applies_in(epoch); the old name goes in the "
                      "next release", FutureWarning, stacklevel=2)
        return self.applies_in(epoch)

    @torch.no_grad()
    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        """The perturbation ``v`` (one tensor per selected parameter), weights left at ``w``.
        ``grads``: ascent gradients computed elsewhere (one step; ``closure`` is not run)."""
        ball = RelativeL2Ball(self.params, self.gamma, self.scale)
        if grads is not None and self.steps != 1:
            raise ValueError("ascent gradients from elsewhere serve one AWP step only")
        if self.steps == 1:
            # v overwrites the gradient buffers: one set of extra tensors, no copy of the model
            grads = self.ascent_gradients(closure) if grads is None else self.averaged(grads)
            return ball.step(grads, self.gamma, inplace=True)
        v = [torch.zeros_like(p) for p in self.params]
        for _ in range(self.steps):
            grads = self.gradients_at(v, closure)
            v = ball.project(torch._foreach_add(v, ball.step(grads, self.step_size)))
        return v
