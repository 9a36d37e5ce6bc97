"""TRADES (Zhang et al., ICML 2019, arXiv 1901.08573)."""

import torch.nn.functional as F

from .base import LossOutput, MethodSpec, register_method


def trades_loss(model, x, x_adv, y, beta, forwards=("x", "x_adv"), label_smoothing=0.0):
    """``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``, KL averaged over the batch, gradients
    through both softmaxes. ``label_smoothing`` smooths the CE term only (as Wang et al.'s
    generated-data code does); the KL term and the attack are unchanged.

    ``forwards`` is the order of the train-mode forwards: two by default (x, then x_adv). The
    authors' loops run three, which changes only BatchNorm running statistics (the outputs of
    the two x forwards are equal): Zhang et al.'s trades.py x, x_adv, x; Wu et al.'s
    TRADES-AWP script (trades_AWP/train_trades_cifar.py, ``train``) x_adv, x, x, its KL target
    from the first x forward and its CE from the last."""
    outputs = {"x": [], "x_adv": []}
    for name in forwards:
        outputs[name].append(model(x if name == "x" else x_adv))
    logits, logits_adv = outputs["x"][-1], outputs["x_adv"][0]
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(outputs["x"][0], dim=1),
                  reduction="batchmean")
    return LossOutput(F.cross_entropy(logits, y, label_smoothing=label_smoothing) + beta * kl,
                      logits_adv)


TRADES = register_method(MethodSpec(
    name="trades", loss=trades_loss, attack_loss="kl", random_start="normal", bn_mode="eval",
    awp_gamma=0.005, awp_warmup=10, paper="Zhang et al. 2019 (arXiv 1901.08573)",
    authors_forwards=("x_adv", "x", "x"),  # the TRADES-AWP script's order, with or without AWP
))
