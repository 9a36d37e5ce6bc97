"""Random weight perturbation of AWP's size: the control of the AWP paper's comparison of
random and adversarial weight perturbations (Wu et al. 2020, Section 4, Fig. 4).

``v_l = gamma * ||w_l|| * z_l / ||z_l||`` with ``z`` Gaussian, drawn afresh at every step: the
same tensors and the same per-tensor size as AWP, no ascent. What AWP gains over it is due to
the ascent's direction, not to weight noise.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..perturb import ParamFilter, RelativeL2Ball
from .base import Closure, WeightPerturbation


class RandomWeightNoise(WeightPerturbation):
    """Gaussian ``v`` on AWP's per-tensor sphere ``||v_l|| = gamma * ||w_l||``; the closure is
    never run (no extra forward or backward).

    Args:
        model, params, warmup_epochs, finite_only: as :class:`WeightPerturbation`.
        gamma: relative size, AWP's (0.01 for AT, 0.005 for TRADES); ``<= 0`` disables it.
        generator: the draws' ``torch.Generator`` (CPU; seeded for a reproducible run).
    """

    name = "random-noise"
    title = "random weight noise"
    summary = ("Gaussian v on AWP's per-tensor sphere gamma ||w_l||, no ascent: the control of "
               "Wu et al.'s Fig. 4")

    def __init__(self, model: nn.Module, gamma: float = 0.01, params: ParamFilter = "weights",
                 warmup_epochs: int = 0, finite_only: bool = False,
                 generator: Optional[torch.Generator] = None):
        super().__init__(model, params, warmup_epochs, finite_only)
        self.gamma = float(gamma)
        self.generator = generator

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "RandomWeightNoise":
        return cls(model, gamma=cfg.awp.gamma, params=cfg.awp.params, **cls.common(cfg),
                   generator=torch.Generator().manual_seed(cfg.seed + 2))

    @property
    def enabled(self) -> bool:
        return self.gamma > 0

    @torch.no_grad()
    def compute(self, closure: Closure = None, grads=None) -> list[torch.Tensor]:
        return RelativeL2Ball(self.params, self.gamma).sample(self.params, self.generator)
