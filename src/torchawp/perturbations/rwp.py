"""Robust Weight Perturbation (RWP; Yu et al., "Robust Weight Perturbation for Adversarial
Training", IJCAI 2022), as the authors' ``AT_AWP_RWP/utils_rwp.py`` computes it, without their
two proxy copies of the model:

* ``steps`` ascent steps (10 in their scripts), each at the current ``w + v``;
* the ascent loss is the per-example loss at the adversarial examples **kept only where it is
  below a threshold** (their "loss stationary condition", 1.7 in the CIFAR-10 script), averaged
  over the whole batch: examples the model already gets badly wrong do not drive the weights;
* the steps' gradients are summed and the sum is rescaled **globally**, ``||v|| = gamma ||w||``
  over all selected tensors together (AWP scales each tensor on its own).

Their proxy takes plain SGD steps (lr 0.01, no momentum) whose sum is then normalised: the
learning rate cancels, so summing the gradients gives the same ``v``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..perturb import ParamFilter
from .base import Closure, WeightPerturbation


class RWP(WeightPerturbation):
    """RWP's perturbation, in place. ``closure(model)`` returns the **per-example** losses
    (shape ``[batch]``) at the adversarial examples, e.g. ``lambda m: F.cross_entropy(m(x_adv),
    y, reduction="none")``; those below ``threshold`` drive the ascent.

    Args:
        model, warmup_epochs, finite_only: as :class:`WeightPerturbation`.
        gamma: ``||v|| / ||w||`` over all selected tensors; 0.01 for AT, 0.005 for TRADES (as
            AWP's); ``<= 0`` disables it.
        steps: ascent steps (the authors' 10).
        threshold: the loss stationary condition (the authors' 1.7 on CIFAR-10).
        params: which tensors; default AWP's (conv and linear weights).
    """

    name = "rwp"

    def __init__(self, model: nn.Module, gamma: float = 0.01, steps: int = 10,
                 threshold: float = 1.7, params: ParamFilter = "weights",
                 warmup_epochs: int = 0, finite_only: bool = False):
        if steps < 1:
            raise ValueError(f"RWP steps must be >= 1 (got {steps})")
        super().__init__(model, params, warmup_epochs, finite_only)
        self.gamma, self.steps, self.threshold = float(gamma), int(steps), float(threshold)

    @property
    def enabled(self) -> bool:
        return self.gamma > 0

    def _below_threshold(self, closure: Closure):
        def loss(net: nn.Module) -> torch.Tensor:
            per_example = closure(net)
            if per_example.dim() != 1:
                raise ValueError("RWP's closure returns one loss per example (reduction="
                                 f"'none'); got shape {tuple(per_example.shape)}")
            return (per_example * (per_example < self.threshold)).mean()
        return loss

    @torch.no_grad()
    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        if grads is not None:
            raise ValueError("RWP runs its own ascent steps; it takes no gradients from elsewhere")
        loss = self._below_threshold(closure)
        w_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.params)))
        total, v = None, [torch.zeros_like(p) for p in self.params]
        for _ in range(self.steps):
            g = self.gradients_at(v, loss)
            total = g if total is None else torch._foreach_add(total, g)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(total)))
            v = torch._foreach_mul(total, self.gamma * w_norm / (norm + 1e-20))
        return v
