"""PGD adversarial training (Madry et al., ICLR 2018), protocol of Rice et al. (ICML 2020)."""

import torch.nn.functional as F

from .base import LossOutput, MethodSpec, register_method


def at_loss(model, x, x_adv, y, beta, label_smoothing=0.0):
    """``CE(f(x_adv), y)`` (optionally label-smoothed); ``x`` and ``beta`` are unused."""
    logits_adv = model(x_adv)
    return LossOutput(F.cross_entropy(logits_adv, y, label_smoothing=label_smoothing),
                      logits_adv)


AT = register_method(MethodSpec(
    name="at", loss=at_loss, attack_loss="ce", random_start="uniform", bn_mode="train",
    awp_gamma=0.01, awp_warmup=0,
    # Rice et al.'s loop (AT_AWP/train_cifar10.py): the model stays in train mode, so the 10 PGD
    # forwards, the restart's loss forward, the training forward and the clean forward for the
    # train accuracy after the step all update BatchNorm statistics (13 per step)
    authors_bn_mode="train-update", authors_clean_forward=True, approximate_ascent=True,
    paper="Madry et al. 2018 (arXiv 1706.06083); Rice et al. 2020 (arXiv 2002.11569)",
))
