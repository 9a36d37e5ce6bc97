"""What every weight perturbation shares: ``w <- w + v`` before the loss whose gradient the
optimizer uses, the optimizer step taken there, ``v`` removed after it (davda54/sam's two named
halves, with the user's loop and optimizer untouched).

A perturbation is a small class: its ball and its number of ascent steps decide :meth:`compute`
(``v`` from the ascent loss, the weights left at ``w``); this base owns the rest (the warm-up,
adding and removing ``v``, the context manager, a non-finite ``v`` made harmless). A new one is
one file: a subclass that sets ``name`` and implements :meth:`compute`
(``docs/architecture.md`` shows one).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..perturb import ParamFilter, add_, frozen_bn_stats, select_parameters

Closure = Callable[[nn.Module], torch.Tensor]


class WeightPerturbation:
    """Perturb ``model``'s selected tensors in place: :meth:`perturb` adds ``v``,
    :meth:`restore` subtracts it; ``with p.perturbed(closure): ...`` does both around the
    unchanged backward and optimizer step.

    Args:
        model: any ``nn.Module``.
        params: which tensors (:func:`torchawp.perturb.select_parameters`).
        warmup_epochs: :meth:`applies_in` is False before this epoch (0-based).
        finite_only: replace a non-finite ``v`` (from a NaN/inf ascent loss) by zeros, so that
            :meth:`restore` returns exactly to ``w``.
    """

    name = "weight perturbation"  # as --perturbation spells it
    title = "a weight perturbation"  # as a sentence names it
    summary = ""  # one line for torchawp list: ball, steps, what drives the ascent, the source
    uses_gamma = True  # its size is awp.gamma (the method's AWP gamma when unset)

    def __init__(self, model: nn.Module, params: ParamFilter = "weights",
                 warmup_epochs: int = 0, finite_only: bool = False):
        self.model = model
        self.warmup_epochs = int(warmup_epochs)
        self.finite_only = finite_only
        self.named_params = select_parameters(model, params)
        self.params = [p for _, p in self.named_params]
        self._v: Optional[list[torch.Tensor]] = None
        # applied to the ascent loss before its backward: the trainer's fp16 GradScaler, so
        # that small gradients do not underflow (every ball here normalises, so it cancels)
        self.loss_scale: Callable[[torch.Tensor], torch.Tensor] = lambda loss: loss
        self.generator: Optional[torch.Generator] = None  # random draws, saved with the run

    @classmethod
    def from_config(cls, model: nn.Module, cfg) -> "WeightPerturbation":
        """The perturbation a validated :class:`~torchawp.config.TrainConfig` asks for."""
        raise NotImplementedError

    @classmethod
    def size(cls, cfg) -> str:
        """Its size in a validated config, as the run's header says it."""
        return f"gamma {cfg.awp.gamma:g}"

    @staticmethod
    def common(cfg) -> dict:
        """The arguments every perturbation takes from a config: its warm-up, and whether a
        non-finite ``v`` is zeroed (skip_nonfinite, fp16)."""
        return {"warmup_epochs": cfg.awp.warmup_epochs,
                "finite_only": cfg.skip_nonfinite or cfg.precision == "fp16"}

    def closure(self, method, x: torch.Tensor, x_adv: torch.Tensor,
                y: torch.Tensor) -> Closure:
        """The loss the ascent climbs in a training step: the method's
        (:meth:`~torchawp.methods.Method.ascent_loss`)."""
        return lambda net: method.ascent_loss(net, x, x_adv, y)

    @property
    def enabled(self) -> bool:
        """False when the settings make the perturbation a no-op (a zero radius)."""
        return True

    def applies_in(self, epoch: int) -> bool:
        """Whether the perturbation applies in ``epoch`` (0-based): enabled and past the
        warm-up."""
        return self.enabled and epoch >= self.warmup_epochs

    def ascent_gradients(self, closure: Closure) -> list[torch.Tensor]:
        """The gradient of ``closure(model)`` with respect to each selected tensor, in train
        mode with BatchNorm's running statistics frozen (the authors' proxy pass never updates
        the model's), ``.grad`` untouched; averaged over ranks under ``torch.distributed``."""
        was_training = self.model.training
        self.model.train()
        try:
            with frozen_bn_stats(self.model), torch.enable_grad():
                loss = self.loss_scale(closure(self.model))
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        finally:
            self.model.train(was_training)
        return self.averaged(grads)

    def gradients_at(self, v: list[torch.Tensor], closure: Closure) -> list[torch.Tensor]:
        """:meth:`ascent_gradients` taken at ``w + v`` (the steps of a multi-step ascent); the
        weights are back at ``w`` afterwards, also on error."""
        add_(self.params, v)
        try:
            return self.ascent_gradients(closure)
        finally:
            add_(self.params, v, alpha=-1.0)

    def averaged(self, grads) -> list[torch.Tensor]:
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

    def compute(self, closure: Closure, grads=None) -> list[torch.Tensor]:
        """The perturbation ``v`` (one tensor per selected parameter), weights left at ``w``:
        the subclass's ball and ascent. ``grads``: ascent gradients computed elsewhere."""
        raise NotImplementedError

    @torch.no_grad()
    def perturb(self, closure: Closure, grads=None) -> Optional[list[torch.Tensor]]:
        """Climb: add ``v`` (from ``closure(model)``, the loss to ascend) to the weights and
        remember it. Returns ``v``, or None when the perturbation is disabled."""
        if not self.enabled:
            return None
        if self._v is not None:
            raise RuntimeError(f"{type(self).__name__}.perturb called twice without restore()")
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

    def epoch_stats(self) -> dict[str, float]:
        """What the perturbation measured since the last call, for the epoch's metrics row
        (RWP: the share of examples that drove its ascent); {} for most."""
        return {}

    def before_step(self) -> None:
        """Called between the backward at ``w + v`` and the optimizer's step: nothing for AWP,
        which steps at ``w + v`` (the authors' semantics); SAM removes ``v`` here, stepping at
        ``w`` with the gradient from ``w + v``."""

    @contextlib.contextmanager
    def perturbed(self, closure: Closure, on: bool = True, grads=None) -> Iterator[None]:
        """``with p.perturbed(closure): loss.backward(); p.before_step(); optimizer.step()``
        perturbs on entry and restores on exit (also on error). ``on=False`` (this step
        without it, e.g. in the warm-up: ``p.perturbed(closure, p.applies_in(epoch))``) runs
        the body unperturbed."""
        if on:
            self.perturb(closure, grads)
        try:
            yield
        finally:
            self.restore()
