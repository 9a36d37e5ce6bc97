import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchawp.attacks import PGD
from torchawp.methods import at_loss, mart_loss, trades_loss

# The "model" is the identity: inputs are logits, so every loss can be computed by hand.
LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]]
LOGITS_ADV = [[1.0, 1.5, -1.0], [0.0, 2.0, 0.5]]
Y = [0, 1]


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def tensors():
    return torch.tensor(LOGITS), torch.tensor(LOGITS_ADV), torch.tensor(Y)


def test_at_loss_is_cross_entropy_on_adversarial_inputs():
    x, x_adv, y = tensors()
    expected = sum(-math.log(softmax(r)[t]) for r, t in zip(LOGITS_ADV, Y)) / 2
    assert at_loss(nn.Identity(), x, x_adv, y, 6.0).loss.item() == pytest.approx(expected, rel=1e-6)


def test_trades_loss_by_hand():
    x, x_adv, y = tensors()
    ce = sum(-math.log(softmax(r)[t]) for r, t in zip(LOGITS, Y)) / 2
    kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(a), softmax(b)))
             for a, b in zip(LOGITS, LOGITS_ADV)) / 2
    out = trades_loss(nn.Identity(), x, x_adv, y, 6.0)
    assert out.loss.item() == pytest.approx(ce + 6.0 * kl, rel=1e-6)
    assert torch.equal(out.logits_adv, x_adv)


def test_mart_loss_by_hand():
    x, x_adv, y = tensors()
    total = 0.0
    for clean, adv, t in zip(LOGITS, LOGITS_ADV, Y):
        p, q = softmax(clean), softmax(adv)
        runner_up = max(q[k] for k in range(3) if k != t)
        bce = -math.log(q[t]) - math.log(1.0001 - runner_up + 1e-12)
        kl = sum(pi * (math.log(pi) - math.log(qi + 1e-12)) for pi, qi in zip(p, q))
        total += bce + 6.0 * kl * (1.0000001 - p[t])
    assert mart_loss(nn.Identity(), x, x_adv, y, 6.0).loss.item() == pytest.approx(total / 2,
                                                                                   rel=1e-5)


def test_mart_weights_the_kl_term_by_clean_misclassification():
    """A confidently correct clean prediction switches the KL term off; a wrong one keeps it."""
    y = torch.tensor([0])
    x_adv = torch.tensor([[0.0, 3.0, 0.0]])
    sure = torch.tensor([[30.0, 0.0, 0.0]])
    wrong = torch.tensor([[0.0, 0.0, 30.0]])
    d_sure = (mart_loss(nn.Identity(), sure, x_adv, y, 6.0).loss
              - mart_loss(nn.Identity(), sure, x_adv, y, 0.0).loss)
    d_wrong = (mart_loss(nn.Identity(), wrong, x_adv, y, 6.0).loss
               - mart_loss(nn.Identity(), wrong, x_adv, y, 0.0).loss)
    assert abs(d_sure.item()) < 1e-4 and d_wrong.item() > 1.0


def test_trades_attack_raises_the_kl_term(digits_model, digits_test):
    x, y = digits_test
    g = torch.Generator().manual_seed(0)
    x_adv = PGD("linf", 0.1, 0.025, steps=10, random_start="normal", loss="kl")(
        digits_model, x, y, g)
    noise = (x + 0.1 * torch.sign(torch.randn(x.shape, generator=g))).clamp(0, 1)

    def kl(x_other):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(digits_model(x_other), 1),
                            F.softmax(digits_model(x), 1), reduction="batchmean").item()

    assert kl(x_adv) > 5 * kl(noise)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
