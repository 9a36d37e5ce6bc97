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

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..perturb import ParamFilter, add_
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
    title = "RWP"
    summary = ("one global ball gamma ||w||, 10 ascent steps of the CE of the adversarial "
               "examples below a loss threshold (1.7), AWP's tensors; Yu et al. 2022")

    def __init__(self, model: nn.Module, gamma: float = 0.01, steps: int = 10,
                 threshold: float = 1.7, params: ParamFilter = "weights",
                 warmup_epochs: int = 0, finite_only: bool = False):
        if steps < 1:
            raise ValueError(f"RWP steps must be >= 1 (got {steps})")
        super().__init__(model, params, warmup_epochs, finite_only)
        self.gamma, self.steps, self.threshold = float(gamma), int(steps), float(threshold)
        self._kept, self._seen = 0, 0  # examples below the threshold at the first step

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "RWP":
        return cls(model, gamma=cfg.awp.gamma, steps=cfg.perturbation.rwp_steps,
                   threshold=cfg.perturbation.threshold, params=cfg.awp.params,
                   **cls.common(cfg))

    @property
    def enabled(self) -> bool:
        return self.gamma > 0

    def closure(self, method, x, x_adv, y) -> Closure:
        """RWP climbs the per-example cross-entropy at the adversarial examples, whatever the
        method's training loss (the authors' ``utils_rwp.py``)."""
        return lambda net: F.cross_entropy(net(x_adv), y, reduction="none")

    def _below_threshold(self, closure: Closure):
        counted = []

        def loss(net: nn.Module) -> torch.Tensor:
            per_example = closure(net)
            if per_example.dim() != 1:
                raise ValueError("RWP's closure returns one loss per example (reduction="
                                 f"'none'); got shape {tuple(per_example.shape)}")
            below = per_example < self.threshold
            if not counted:  # at w: how many examples drive this step's ascent
                self._kept = self._kept + below.detach().sum()  # a device tensor: no sync
                self._seen += below.numel()
                counted.append(True)
            return (per_example * below).mean()
        return loss

    def epoch_stats(self) -> dict[str, float]:
        """``rwp_kept``: the share of examples whose adversarial loss at ``w`` was below the
        threshold, the ones that drove the ascent (0: every v was 0, RWP did nothing)."""
        if not self._seen:
            return {}
        share = float(self._kept) / self._seen
        if share == 0:
            warnings.warn(f"RWP: no adversarial loss was below the threshold {self.threshold:g} "
                          f"since the last epoch, so v was 0 and RWP did nothing (its loss "
                          f"stationary condition; raise --perturbation.threshold to change it)",
                          stacklevel=2)
        self._kept, self._seen = 0, 0
        return {"rwp_kept": share}

    @torch.no_grad()
    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        if grads is not None:
            raise ValueError("RWP runs its own ascent steps; it takes no gradients from elsewhere")
        loss = self._below_threshold(closure)
        w_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.params)))
        # v is always the running sum of the gradients times a scale: only the sum is kept
        # (one set of tensors beside the step's gradient), and each step is taken at
        # w + scale * sum
        total = scale = None
        for _ in range(self.steps):
            if total is None:
                total = self.ascent_gradients(loss)
            else:  # v = scale * total exists only while it is added (no host sync)
                add_(self.params, torch._foreach_mul(total, scale))
                try:
                    g = self.ascent_gradients(loss)
                finally:
                    add_(self.params, torch._foreach_mul(total, scale), alpha=-1.0)
                torch._foreach_add_(total, g)
                del g
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(total)))
            scale = self.gamma * w_norm / (norm + 1e-20)
        torch._foreach_mul_(total, scale)
        return total
