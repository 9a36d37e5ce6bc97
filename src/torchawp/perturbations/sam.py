"""Sharpness-aware minimisation's weight perturbation (SAM; Foret et al., ICLR 2021) and its
scale-invariant variant (ASAM; Kwon et al., ICML 2021), as ``davda54/sam`` computes them:

    SAM:   v = rho * g / ||g||                 one L2 norm over every parameter with a gradient
    ASAM:  v = rho * w^2 g / || |w| g ||        elementwise (davda54's ``adaptive=True``)

Unlike AWP, SAM takes the optimizer step back at ``w`` with the gradient from ``w + v`` (its
``second_step`` restores ``w`` first): :meth:`SAM.before_step` removes ``v`` before the
optimizer steps. On the adversarial loss this is the AWP-like combination; on the clean loss
(``--method standard``) it is SAM as Wei et al. (2023) train it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..perturb import ParamFilter
from .base import Closure, WeightPerturbation


class SAM(WeightPerturbation):
    """``v = rho * g / (||g|| + 1e-12)`` over all selected tensors at once (``adaptive``: ASAM's
    ``rho * w^2 g / (|| |w| g || + 1e-12)``), ``g`` the gradient of the ascent loss at ``w``.

    Args:
        model, warmup_epochs, finite_only: as :class:`WeightPerturbation`.
        rho: the radius; 0.05 for SAM (davda54's default), about 0.5-2 for ASAM; ``<= 0``
            disables it.
        adaptive: ASAM.
        params: which tensors; default ``"all"`` (davda54/sam perturbs every parameter with a
            gradient: biases and BatchNorm's affine parameters included).
    """

    name = "sam"
    title = "SAM"
    uses_gamma = False  # its size is perturbation.rho
    summary = ("rho g / ||g|| over every parameter (rho 0.05), 1 ascent step of the method's "
               "loss, step at w; Foret et al. 2021 (davda54/sam)")

    def __init__(self, model: nn.Module, rho: float = 0.05, adaptive: bool = False,
                 params: ParamFilter = "all", warmup_epochs: int = 0,
                 finite_only: bool = False):
        super().__init__(model, params, warmup_epochs, finite_only)
        self.rho, self.adaptive = float(rho), adaptive

    @classmethod
    def size(cls, cfg) -> str:
        return f"rho {cfg.perturbation.rho:g}"

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "SAM":
        return cls(model, rho=cfg.perturbation.rho, **cls.common(cfg))

    @property
    def enabled(self) -> bool:
        return self.rho > 0

    @torch.no_grad()
    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        # v is built in the gradient's own buffers where they are ours: one set of tensors
        own = grads is None
        grads = self.ascent_gradients(closure) if own else self.averaged(grads)
        if self.adaptive:  # || |w| g || in the norm; v = w^2 g scale, as (|w| g) |w| scale
            scaled = [p.abs() * g for p, g in zip(self.params, grads)]
            del grads
        else:
            scaled = grads if own else [g.clone() for g in grads]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
        scale = self.rho / (norm + 1e-12)
        if self.adaptive:
            for t, p in zip(scaled, self.params):
                t.mul_(p.abs()).mul_(scale)
            return scaled
        torch._foreach_mul_(scaled, scale)
        return scaled

    def before_step(self) -> None:
        """SAM steps at ``w``: remove ``v`` before the optimizer's step."""
        self.restore()


class ASAM(SAM):
    """:class:`SAM` with ``adaptive=True`` (Kwon et al. 2021); rho 0.5 by default, as the ASAM
    authors' CIFAR example."""

    name = "asam"
    title = "ASAM"
    summary = ("SAM scaled elementwise by |w| (rho 0.5): rho w^2 g / || |w| g ||; Kwon et al. "
               "2021")

    def __init__(self, model: nn.Module, rho: float = 0.5, params: ParamFilter = "all",
                 warmup_epochs: int = 0, finite_only: bool = False):
        super().__init__(model, rho, True, params, warmup_epochs, finite_only)
