"""PGD adversarial training (Madry et al., ICLR 2018), protocol of Rice et al. (ICML 2020)."""

import torch.nn.functional as F

from .base import LossOutput, MethodSpec, register_method


def at_loss(model, x, x_adv, y, beta):
    """``CE(f(x_adv), y)``; ``x`` and ``beta`` are unused."""
    logits_adv = model(x_adv)
    return LossOutput(F.cross_entropy(logits_adv, y), logits_adv)


AT = register_method(MethodSpec(
    name="at", loss=at_loss, attack_loss="ce", random_start="uniform", bn_mode="train",
    awp_gamma=0.01, awp_warmup=0,
    paper="Madry et al. 2018 (arXiv 1706.06083); Rice et al. 2020 (arXiv 2002.11569)",
))
