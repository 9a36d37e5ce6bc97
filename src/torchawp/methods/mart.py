"""MART (Wang et al., ICLR 2020): misclassification-aware adversarial training."""

import torch
import torch.nn.functional as F

from .base import LossOutput, MethodSpec, register_method


def mart_loss(model, x, x_adv, y, beta):
    """``BCE(f(x_adv), y) + beta * KL(f(x) || f(x_adv)) * (1 - f_y(x))``, batch mean, where
    ``BCE = -log f_y(x_adv) - log(1 - max_{k != y} f_k(x_adv))``. The small constants
    (1.0001, 1e-12, 1.0000001) are the authors'."""
    logits = model(x)
    logits_adv = model(x_adv)
    probs_adv = F.softmax(logits_adv, dim=1)
    top2 = torch.argsort(probs_adv, dim=1)[:, -2:]
    runner_up = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    bce = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - probs_adv + 1e-12),
                                                      runner_up)
    probs = F.softmax(logits, dim=1)
    true_probs = probs.gather(1, y[:, None]).squeeze(1)
    kl = F.kl_div(torch.log(probs_adv + 1e-12), probs, reduction="none").sum(1)
    return LossOutput(bce + beta * (kl * (1.0000001 - true_probs)).mean(), logits_adv)


MART = register_method(MethodSpec(
    name="mart", loss=mart_loss, attack_loss="ce", random_start="normal", bn_mode="eval",
    awp_gamma=0.005, awp_warmup=10, label_smoothing=False,
    paper="Wang et al. 2020 (ICLR, openreview rklOg6EFwS)",
))
