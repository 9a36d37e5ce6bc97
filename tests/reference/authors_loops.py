"""One training step of each of the authors' loops, transcribed from the logic of their published
scripts (not from torchawp), to check that ``bn_updates: authors`` runs the same train-mode
forwards, in the same order, with the same BatchNorm side effects.

* :func:`at_awp_step`: Wu et al.'s AT_AWP/train_cifar10.py, which is Rice et al.'s loop with AWP:
  the model is in train mode throughout, so every forward updates BatchNorm statistics: the
  PGD forwards, the loss forward that scores the restart, the training forward on x', and the
  clean forward after the step that measures train accuracy (13 for PGD-10).
* :func:`trades_awp_step`: Wu et al.'s trades_AWP/train_trades_cifar.py: the attack in eval mode
  from the unclipped ``x + 0.001 N(0, 1)``, then train-mode forwards x', x, x.

The AWP perturbation comes from the proxy-model reference (``awp_proxy.awp_diff``), which never
touches the model's statistics. The random start is drawn from ``gen`` the way torchawp draws
it, so that both see the same numbers (the authors draw from the global RNG; the distribution
is theirs).
"""

import torch
import torch.nn.functional as F

from .awp_proxy import add_into_weights, awp_diff


def at_awp_step(model, optimizer, x, y, eps, alpha, steps, gamma, gen, awp_on=True):
    model.train()
    # attack_pgd, one restart, L-inf; delta kept inside [0, 1] - x
    delta = (2 * torch.rand(x.shape, generator=gen, dtype=x.dtype) - 1) * eps
    delta = torch.max(torch.min(delta, 1 - x), -x)
    delta.requires_grad_(True)
    for _ in range(steps):
        output = model(x + delta)                                   # BN update
        loss = F.cross_entropy(output, y)
        loss.backward()                 # also fills parameter .grad; zeroed before the step
        grad = delta.grad.detach()
        d = torch.clamp(delta.detach() + alpha * torch.sign(grad), -eps, eps)
        d = torch.max(torch.min(d, 1 - x), -x)
        delta.data = d
        delta.grad.zero_()
    F.cross_entropy(model(x + delta), y, reduction="none")           # the restart's loss: BN
    x_adv = torch.clamp(x + delta.detach(), 0, 1)

    scaled = {}
    if awp_on:
        diff = awp_diff(model, lambda m: F.cross_entropy(m(x_adv), y), gamma)
        scaled = {k: gamma * v for k, v in diff.items()}
        add_into_weights(model, scaled, 1.0)
    robust_loss = F.cross_entropy(model(x_adv), y)                   # BN
    optimizer.zero_grad()
    robust_loss.backward()
    optimizer.step()
    if awp_on:
        add_into_weights(model, scaled, -1.0)
    with torch.no_grad():
        model(x)                                                      # train accuracy: BN


def trades_loss_awp_order(model, x, x_adv, y, beta):
    """The TRADES-AWP script's training loss: forwards x', x (KL target), x (CE)."""
    logits_adv = model(x_adv)
    loss_robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(model(x), dim=1),
                           reduction="batchmean")
    logits = model(x)
    return F.cross_entropy(logits, y) + beta * loss_robust


def trades_awp_step(model, optimizer, x, y, eps, alpha, steps, beta, gamma, gen, awp_on=True):
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, generator=gen, dtype=x.dtype)  # unclipped
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1),
                               reduction="sum")
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)

    model.train()
    scaled = {}
    if awp_on:  # TradesAWP.calc_awp: the proxy ascends CE(x) + beta KL, in train mode
        def proxy_loss(m):
            natural = F.cross_entropy(m(x), y)
            robust = F.kl_div(F.log_softmax(m(x_adv), dim=1), F.softmax(m(x), dim=1),
                              reduction="batchmean")
            return natural + beta * robust

        diff = awp_diff(model, proxy_loss, gamma)
        scaled = {k: gamma * v for k, v in diff.items()}
        add_into_weights(model, scaled, 1.0)
    optimizer.zero_grad()
    loss = trades_loss_awp_order(model, x, x_adv, y, beta)          # BN: x', x, x
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if awp_on:
        add_into_weights(model, scaled, -1.0)
