"""TRADES (Zhang et al., ICML 2019, arXiv 1901.08573)."""

import torch.nn.functional as F

from .base import LossOutput, MethodSpec, register_method


def trades_loss(model, x, x_adv, y, beta):
    """``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``, KL averaged over the batch, gradients
    through both softmaxes; two train-mode forwards, as in the authors' code."""
    logits = model(x)
    logits_adv = model(x_adv)
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                  reduction="batchmean")
    return LossOutput(F.cross_entropy(logits, y) + beta * kl, logits_adv)


TRADES = register_method(MethodSpec(
    name="trades", loss=trades_loss, attack_loss="kl", random_start="normal", bn_mode="eval",
    awp_gamma=0.005, awp_warmup=10, paper="Zhang et al. 2019 (arXiv 1901.08573)",
))
