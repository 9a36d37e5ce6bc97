"""Standard (non-adversarial) training: the pseudo-labelling model of RST, and a baseline."""

import torch.nn.functional as F

from .base import LossOutput, MethodSpec, register_method


def standard_loss(model, x, x_adv, y, beta, label_smoothing=0.0):
    """``CE(f(x), y)``; no adversarial examples (``x_adv`` is ``x``)."""
    logits = model(x)
    return LossOutput(F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits)


STANDARD = register_method(MethodSpec(
    name="standard", loss=standard_loss, attack_loss="none", bn_mode="eval", awp_gamma=0.01,
    awp_warmup=0, paper="empirical risk minimisation (no attack)",
))
