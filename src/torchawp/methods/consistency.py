"""Consistency regularisation for adversarial training (Tack et al., "Consistency
Regularization for Adversarial Robustness", AAAI 2022; the authors' code
``alinlab/consistency-adversarial``, ``training/adv_train/*_consistency.py``).

Each batch holds two augmented views of the same images, stacked (``x = [x1; x2]``, labels
repeated; the loader draws the augmentation twice, ``data.views``). The method's own loss is
taken on both views together, and the adversarial outputs of the two views are pulled together:

    loss = method_loss([x1'; x2'], [y; y]) + weight * JS(softmax(f(x1') / T), softmax(f(x2') / T))

JS the Jensen-Shannon divergence (batch mean, natural log), ``T`` a temperature (the authors'
weight 1 and T 0.5). The weight perturbation, if any, climbs this whole loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossOutput, Method


def jensen_shannon(logits1: torch.Tensor, logits2: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """JS(p1, p2) = (KL(p1 || m) + KL(p2 || m)) / 2, ``m`` the mean of the two tempered
    softmaxes; averaged over the batch. ``m`` is clamped at 1e-8 before its log (as the
    authors')."""
    p1 = F.softmax(logits1 / temperature, dim=1)
    p2 = F.softmax(logits2 / temperature, dim=1)
    log_m = torch.log((0.5 * (p1 + p2)).clamp(min=1e-8))
    return 0.5 * (F.kl_div(log_m, p1, reduction="batchmean")
                  + F.kl_div(log_m, p2, reduction="batchmean"))


class Consistency(Method):
    """A method with the consistency term: every half is the wrapped method's (its attack,
    BatchNorm policy and options too), the loss adds ``weight * JS`` between the two views'
    adversarial outputs, and so does the loss a weight perturbation climbs."""

    def __init__(self, inner: Method, weight: float, temperature: float):
        self.inner, self.weight, self.temperature = inner, float(weight), float(temperature)

    def __getattr__(self, name: str):  # spec, attack, bn_policy, options: the method's
        return getattr(self.__dict__["inner"], name)

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.inner.epoch = value

    def craft(self, net, x, y, generator=None) -> torch.Tensor:
        return self.inner.craft(net, x, y, generator)

    def loss(self, net: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
             y: torch.Tensor) -> LossOutput:
        out = self.inner.loss(net, x, x_adv, y)
        first, second = out.logits_adv.chunk(2)
        return LossOutput(out.loss + self.weight * jensen_shannon(first, second,
                                                                  self.temperature),
                          out.logits_adv)

    def after_step(self, net: nn.Module, x: torch.Tensor) -> None:
        self.inner.after_step(net, x)
