"""The consistency-regularised losses as the authors' training loops compute them
(``alinlab/consistency-adversarial``: ``training/__init__.py``'s Jensen-Shannon divergence,
``training/adv_train/adv_train_consistency.py`` and ``adv_trades_consistency.py``), retyped as
plain functions of a model and a batch of two stacked views, for the faithfulness tests."""

import torch
import torch.nn.functional as F


def js_divergence(a, b, T):
    """Both views' tempered softmaxes against their mean; KL in the batch mean, halved."""
    pa, pb = F.softmax(a / T, dim=1), F.softmax(b / T, dim=1)
    log_mean = torch.log((0.5 * (pa + pb)).clamp(min=1e-8))
    return 0.5 * (F.kl_div(log_mean, pa, reduction="batchmean")
                  + F.kl_div(log_mean, pb, reduction="batchmean"))


def at_consistency(model, x_adv_pair, y, lam, T):
    """AT: the cross-entropy of both views' adversarial examples (labels repeated) plus lam
    times the JS term between the two halves of those outputs."""
    outputs_adv = model(x_adv_pair)
    first, second = outputs_adv.chunk(2)
    return F.cross_entropy(outputs_adv, y.repeat(2)) + lam * js_divergence(first, second, T)


def trades_consistency(model, x_pair, x_adv_pair, y, beta, lam, T):
    """TRADES: clean cross-entropy of both views, beta times the KL of the adversarial outputs
    from the clean ones (batch mean), plus lam times the JS term of the adversarial halves."""
    outputs = model(x_pair)
    outputs_adv = model(x_adv_pair)
    kl = F.kl_div(F.log_softmax(outputs_adv, dim=1), F.softmax(outputs, dim=1),
                  reduction="batchmean")
    first, second = outputs_adv.chunk(2)
    return (F.cross_entropy(outputs, y.repeat(2)) + beta * kl
            + lam * js_divergence(first, second, T))
