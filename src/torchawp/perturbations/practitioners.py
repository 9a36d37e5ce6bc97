"""The practitioners' AWP: the ~60-line class copied across Kaggle NLP solutions and wrapped for
the Hugging Face Trainer. It is AWP's idea (climb the loss in weight space, take the gradient
there) with another ball and no adversarial examples, so it has its own name here, never "the
paper's AWP".

For every trainable tensor whose name contains ``param_name`` (default ``"weight"``: embeddings
and LayerNorm weights too), ``adv_step`` times::

    r = adv_lr * g / (||g|| + 1e-6) * (||w + v|| + 1e-6)
    v <- clip(v + r, -adv_eps |w|, adv_eps |w|)

elementwise, ``g`` the gradient at the current ``w + v`` (a tensor whose gradient is zero or
NaN is left alone); the gradient the optimizer uses is the loss's at the final ``w + v``, and
the step is taken back at ``w`` (:meth:`before_step`), as the original restores its backup
before ``optimizer.step()``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Closure, WeightPerturbation


class PractitionersAWP(WeightPerturbation):
    """The Kaggle-style AWP (see the module).

    Args:
        model, warmup_epochs (the original's ``start_epoch``), finite_only: as
            :class:`WeightPerturbation`.
        adv_lr: relative step (1e-4 to 1 in use); ``<= 0`` disables it.
        adv_eps: the elementwise box, relative to ``|w|`` (1e-4 to 0.2 in use).
        adv_step: steps (the original's default 1).
        param_name: the substring a tensor's name must contain.
    """

    name = "awp-practitioners"
    title = "the practitioners' AWP"
    uses_gamma = False  # its size is perturbation.adv_lr / adv_eps
    summary = ("the Kaggle AWP: relative step adv_lr, elementwise box adv_eps |w|, every tensor "
               "named *weight*, step at w; not the paper's AWP")

    def __init__(self, model: nn.Module, adv_lr: float = 1.0, adv_eps: float = 0.2,
                 adv_step: int = 1, param_name: str = "weight", warmup_epochs: int = 0,
                 finite_only: bool = False):
        if adv_step < 1:
            raise ValueError(f"adv_step must be >= 1 (got {adv_step})")
        super().__init__(model, lambda name, p: param_name in name, warmup_epochs, finite_only)
        self.adv_lr, self.adv_eps, self.adv_step = float(adv_lr), float(adv_eps), int(adv_step)

    @classmethod
    def size(cls, cfg) -> str:
        return f"adv_lr {cfg.perturbation.adv_lr:g} adv_eps {cfg.perturbation.adv_eps:g}"

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "PractitionersAWP":
        p = cfg.perturbation
        return cls(model, adv_lr=p.adv_lr, adv_eps=p.adv_eps, adv_step=p.adv_step,
                   param_name=p.param_name, **cls.common(cfg))

    @property
    def enabled(self) -> bool:
        return self.adv_lr > 0

    @torch.no_grad()
    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        if self.adv_step == 1 and grads is None:  # v built in the gradient's own buffers
            return self._one_step(self.ascent_gradients(closure))
        v = [torch.zeros_like(p) for p in self.params]
        for step in range(self.adv_step):
            if step or grads is None:  # the first gradient may come from the user's backward
                grads = self.gradients_at(v, closure)
            for vi, p, g in zip(v, self.params, grads):  # the weights are at w here
                g_norm = torch.linalg.vector_norm(g)
                if g_norm == 0 or torch.isnan(g_norm):  # one host sync per tensor, as the original
                    continue
                r = self.adv_lr * g / (g_norm + 1e-6) * (torch.linalg.vector_norm(p + vi) + 1e-6)
                bound = self.adv_eps * p.abs()  # the original's backup box, a tensor at a time
                vi.copy_(torch.minimum(torch.maximum(vi + r, -bound), bound))
        return v

    def _one_step(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """The single step from ``v = 0``, in place: ``g`` becomes ``v`` (one set of tensors
        beside the weights, as AWP's)."""
        for p, g in zip(self.params, grads):  # the weights are at w here
            g_norm = torch.linalg.vector_norm(g)
            if g_norm == 0 or torch.isnan(g_norm):  # left alone: v stays 0 there
                g.zero_()
                continue
            g.mul_(self.adv_lr / (g_norm + 1e-6) * (torch.linalg.vector_norm(p) + 1e-6))
            bound = self.adv_eps * p.abs()
            torch.minimum(torch.maximum(g, -bound), bound, out=g)
        return grads

    def before_step(self) -> None:
        """The step is taken at ``w`` with the gradient from ``w + v``."""
        self.restore()
