"""A training method is data plus one loss function.

The data say how the method attacks (attack loss, random start, BatchNorm mode while crafting)
and what its AWP defaults are; the loss function computes the training loss, which is also the
loss AWP ascends (the authors' AWP scripts use each method's own loss for the ascent). A method
of your own is a :class:`MethodSpec` in your module, trained with ``--method module.path:NAME``
(``module.path:NAME-awp`` with AWP), its coefficients in ``method_args``; the built-in ones
are registered by name (:func:`register_method`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
from torch import nn

from ..attacks import PGD
from ..errors import ConfigError
from ..plugins import import_named


class LossOutput(NamedTuple):
    loss: torch.Tensor         # scalar training loss
    logits_adv: torch.Tensor   # logits on the adversarial inputs (for train metrics)


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, float], LossOutput]


@dataclass(frozen=True)
class BNPolicy:
    """Which train-mode forwards of a step update BatchNorm's running statistics, in one place:
    the attack's model mode while crafting, the order of the loss's forwards (None: the loss's
    own), and whether a clean forward follows the step (the authors' AT loop measures train
    accuracy that way, in train mode)."""

    attack_bn_mode: str
    loss_forwards: Optional[tuple] = None
    clean_forward_after_step: bool = False

    @torch.no_grad()
    def after_step(self, net: nn.Module, x: torch.Tensor) -> None:
        """The forwards that run after the optimizer step only for their BatchNorm update."""
        if self.clean_forward_after_step:
            net(x)


@dataclass(frozen=True)
class MethodSpec:
    """One adversarial training method.

    Attributes:
        name: registry name (``X-awp`` is the same method with AWP).
        loss: ``loss(model, x, x_adv, y, beta) -> LossOutput``, in train mode.
        attack_loss: what the inner PGD maximises: ce, kl (TRADES) or margin; none trains on
            clean inputs (standard training).
        random_start: uniform (Madry/Rice) or normal (0.001 N(0,1), TRADES/MART).
        bn_mode: BatchNorm mode while crafting (train for AT as in Rice et al.; eval otherwise).
        awp_gamma, awp_warmup: the authors' AWP defaults for this method.
        needs_extra_data: RST: batches mix in pseudo-labelled extra data (every method may
            use extra data; this one requires it).
        label_smoothing: the loss takes ``label_smoothing=`` for its cross-entropy terms.
        takes_epoch: the loss takes ``epoch=`` (0-based), for schedules inside the loss (a
            coefficient that ramps up, MAIL-style weights).
        setup: ``setup(model, cfg) -> dict``, run once when training starts: what the loss
            needs besides the batch (a helper or teacher model, a buffer), passed to it as
            keyword arguments with ``method_args``.
        approximate_ascent: the attack maximises the training loss at ``x_adv`` (AT), so
            ``awp.ascent: last-pgd-step`` may reuse the last PGD iteration's weight gradient.
        cls: the :class:`Method` subclass whose halves run it (default :class:`Method`: the
            spec's attack, loss and BatchNorm policy as they are).
        paper: the reference.
        authors_bn_mode, authors_forwards, authors_clean_forward: what ``bn_updates:
            authors`` changes to run the train-mode forwards of the authors' loop, in their
            order: the BatchNorm mode while crafting, the order of the loss's forwards (a
            tuple of "x" / "x_adv"), and a clean forward after the step.
    """

    name: str
    loss: LossFn
    attack_loss: str = "ce"
    random_start: str = "uniform"
    bn_mode: str = "eval"
    awp_gamma: float = 0.005
    awp_warmup: int = 10
    needs_extra_data: bool = False
    label_smoothing: bool = True
    takes_epoch: bool = False
    setup: Optional[Callable] = None
    approximate_ascent: bool = False
    paper: str = ""
    authors_bn_mode: Optional[str] = None
    authors_forwards: Optional[tuple] = None
    authors_clean_forward: bool = False
    cls: Optional[type] = None

    def build(self, cfg, model: nn.Module) -> "Method":
        """The method for one run: its attack on the config's threat model, its loss options,
        BatchNorm policy and ``setup`` helpers (``cls`` or :class:`Method`)."""
        return (self.cls or Method)(self, cfg, model)

    def bn_policy(self, bn_updates: str = "training") -> BNPolicy:
        """``bn_updates: training``: only the training loss's forwards update BatchNorm (attacks
        never change the model); ``authors``: every forward of the authors' loop, in their
        order (``authors_*``)."""
        if bn_updates != "authors":
            return BNPolicy(self.bn_mode)
        return BNPolicy(self.authors_bn_mode or self.bn_mode, self.authors_forwards,
                        self.authors_clean_forward)

    def loss_options(self, bn_updates: str = "training", label_smoothing: float = 0.0) -> dict:
        """Keyword arguments of :attr:`loss` for a run: the forward order of
        :meth:`bn_policy`, and label smoothing when asked for."""
        options = {}
        forwards = self.bn_policy(bn_updates).loss_forwards
        if forwards:
            options["forwards"] = forwards
        if label_smoothing:
            options["label_smoothing"] = label_smoothing
        return options

    def attack(self, norm: str, eps: float, step_size: float, steps: int,
               bn_mode: Optional[str] = None, clamp_start: bool = True) -> Callable:
        """The method's training attack on the given threat model, called as
        ``attack(model, x, y, generator)``."""
        if self.attack_loss == "none":
            return lambda model, x, y, generator=None: x
        return PGD(norm=norm, eps=eps, step_size=step_size, steps=steps,
                   random_start=self.random_start, loss=self.attack_loss,
                   bn_mode=bn_mode or self.bn_mode, clamp_start=clamp_start)


class Method:
    """A method as the training step calls it, built once per run from its
    :class:`MethodSpec` and the run's config (``spec.build(cfg, model)``). Four halves, each
    overridable by a subclass named in the spec's ``cls`` (a method that needs two views of
    each image or a helper model is one file):

    * :meth:`craft`: the adversarial examples at the current weights;
    * :meth:`loss`: the training loss (and the logits on ``x_adv`` for the train metrics);
    * :meth:`ascent_loss`: the loss a weight perturbation climbs (the authors' AWP scripts
      climb each method's own training loss);
    * :meth:`after_step`: forwards run after the optimizer step only for BatchNorm's
      statistics (the ``bn_updates: authors`` policy), with :attr:`bn_policy` deciding which
      forwards update them.
    """

    def __init__(self, spec: "MethodSpec", cfg, model: nn.Module):
        a = cfg.attack
        self.spec, self.beta, self.epoch = spec, cfg.beta, 0  # epoch: 0-based, set by the loop
        self.attack = spec.attack(a.norm, a.eps, a.step_size, a.steps, a.bn_mode, a.clamp_start)
        self.bn_policy = spec.bn_policy(cfg.bn_updates)
        # the loss's keywords: forward order, label smoothing, method_args, what setup built
        self.options = {**spec.loss_options(cfg.bn_updates, cfg.optim.label_smoothing),
                        **cfg.method_args, **(spec.setup(model, cfg) if spec.setup else {})}

    def craft(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``x'`` for the batch at the current weights (the method's attack)."""
        return self.attack(net, x, y, generator)

    def loss(self, net: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
             y: torch.Tensor) -> LossOutput:
        """The training loss at the current weights, train mode."""
        epoch = {"epoch": self.epoch} if self.spec.takes_epoch else {}
        return self.spec.loss(net, x, x_adv, y, self.beta, **self.options, **epoch)

    def ascent_loss(self, net: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                    y: torch.Tensor) -> torch.Tensor:
        """The scalar a weight perturbation ascends: the training loss itself."""
        return self.loss(net, x, x_adv, y).loss

    def after_step(self, net: nn.Module, x: torch.Tensor) -> None:
        """After the optimizer step, back at ``w``: the BatchNorm-only forwards, if any."""
        self.bn_policy.after_step(net, x)


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def method_names() -> list[str]:
    """Every method name, each also as ``X-awp``."""
    return sorted([n for n in METHODS] + [f"{n}-awp" for n in METHODS])


def get_method(name: str) -> tuple[MethodSpec, bool]:
    """``"trades-awp"`` -> (the TRADES spec, True); ``"my.module:SPEC-awp"`` -> (the
    :class:`MethodSpec` named ``SPEC`` in ``my.module``, True)."""
    base, awp = (name[:-4], True) if name.endswith("-awp") else (name, False)
    if ":" in base:
        return _imported_method(base), awp
    if base not in METHODS:
        hint = difflib.get_close_matches(name, method_names(), n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"unknown method {name!r}{did_you_mean} "
                          f"(methods: {', '.join(method_names())})")
    return METHODS[base], awp


def _imported_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` that ``module.path:NAME`` names (a method of your own)."""
    spec, module_name, attr = import_named(name, "method")
    if not isinstance(spec, MethodSpec):
        raise ConfigError(f"method {name}: {module_name}.{attr} is "
                          f"{'missing' if spec is None else 'a ' + type(spec).__name__}; name a "
                          f"torchawp.methods.MethodSpec")
    return spec
