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

import contextlib
import warnings
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from .perturb import ParamFilter, RelativeL2Ball, add_, frozen_bn_stats, select_parameters

Closure = Callable[[nn.Module], torch.Tensor]


class AWP:
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
        warmup_epochs: :meth:`active` is False before this epoch.
        finite_only: replace a non-finite ``v`` (from a NaN/inf ascent loss) by zeros, so that
            :meth:`restore` returns exactly to ``w`` (costs one pass over the weights).
    """

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
        self.model = model
        self.gamma = float(gamma)
        self.steps = int(steps)
        self.step_size = step_size if step_size is not None else (
            self.gamma if steps == 1 else 2.5 * self.gamma / steps)
        self.scale = scale
        self.warmup_epochs = int(warmup_epochs)
        self.finite_only = finite_only
        self.named_params = select_parameters(model, params)
        self.params = [p for _, p in self.named_params]
        if self.gamma > 0 and not self.params:
            raise ValueError("AWP found no parameters to perturb with this filter")
        self._v: Optional[list[torch.Tensor]] = None

    @property
    def enabled(self) -> bool:
        return self.gamma > 0

    def applies_in(self, epoch: int) -> bool:
        """Whether AWP applies in ``epoch`` (0-based): enabled and past the warmup."""
        return self.enabled and epoch >= self.warmup_epochs

    def active(self, epoch: int) -> bool:
        """Deprecated name of :meth:`applies_in` (kept for one release)."""
        warnings.warn("AWP.active(epoch) is now AWP.applies_in(epoch); the old name goes in the "
                      "next release", FutureWarning, stacklevel=2)
        return self.applies_in(epoch)

    def _ascent_grads(self, closure: Closure) -> list[torch.Tensor]:
        was_training = self.model.training
        self.model.train()
        try:
            with frozen_bn_stats(self.model), torch.enable_grad():
                loss = closure(self.model)
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        finally:
            self.model.train(was_training)
        return self._averaged(grads)

    def _averaged(self, grads) -> list[torch.Tensor]:
        """Zeros for unused tensors; under DDP the average over ranks."""
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Every rank must apply the same v: average the ascent gradient like DDP would.
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
            grads = list(torch.split(flat, [g.numel() for g in grads]))
            grads = [g.view_as(p) for g, p in zip(grads, self.params)]
        return grads

    @torch.no_grad()
    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        """The perturbation ``v`` (one tensor per selected parameter), weights left at ``w``.
        ``grads``: ascent gradients computed elsewhere (one step; ``closure`` is not run)."""
        ball = RelativeL2Ball(self.params, self.gamma, self.scale)
        if grads is not None and self.steps != 1:
            raise ValueError("ascent gradients from elsewhere serve one AWP step only")
        if self.steps == 1:
            # v overwrites the gradient buffers: one set of extra tensors, no copy of the model
            grads = self._ascent_grads(closure) if grads is None else self._averaged(grads)
            return ball.step(grads, self.gamma, inplace=True)
        v = [torch.zeros_like(p) for p in self.params]
        for _ in range(self.steps):
            add_(self.params, v)  # the gradient is taken at w + v ...
            try:
                grads = self._ascent_grads(closure)
            finally:
                add_(self.params, v, alpha=-1.0)  # ... and the weights are back at w
            v = ball.project(torch._foreach_add(v, ball.step(grads, self.step_size)))
        return v

    @torch.no_grad()
    def perturb(self, closure: Closure, grads=None) -> Optional[list[torch.Tensor]]:
        """Climb: add ``v`` (computed from ``closure(model)``) to the weights and remember it.

        ``closure`` receives the model and returns the scalar loss to ascend, computed the way
        the method's training loss is (AT: ``CE(f(x_adv), y)``; TRADES: its full loss). With
        ``grads`` (e.g. from the attack's last step) those are ascended instead and ``closure``
        is not run. Returns ``v``, or None when AWP is disabled.
        """
        if not self.enabled:
            return None
        if self._v is not None:
            raise RuntimeError("AWP.perturb called twice without restore()")
        v = self.compute(closure, grads)
        if self.finite_only:
            v = [torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0) for t in v]
        add_(self.params, v)
        self._v = v
        return v

    @torch.no_grad()
    def restore(self) -> None:
        """Come back: subtract the ``v`` added by :meth:`perturb` (no-op if none is applied)."""
        if self._v is None:
            return
        add_(self.params, self._v, alpha=-1.0)
        self._v = None

    @contextlib.contextmanager
    def perturbed(self, closure: Closure, on: bool = True, grads=None) -> Iterator[None]:
        """``with awp.perturbed(closure): loss.backward(); optimizer.step()`` perturbs on entry
        and restores on exit (also on error). ``on=False`` (this step without AWP, e.g. in the
        warm-up: ``awp.perturbed(closure, awp.applies_in(epoch))``) runs the body unperturbed;
        ``grads``: see :meth:`perturb`."""
        if on:
            self.perturb(closure, grads)
        try:
            yield
        finally:
            self.restore()
