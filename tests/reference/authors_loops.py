"""One training step of each of the authors' loops, transcribed from the logic of their published
scripts (not from torchawp), to check that ``bn_updates: authors`` runs the same train-mode
forwards, in the same order, with the same BatchNorm side effects.

* :func:`at_awp_step`: Wu et al.'s AT_AWP/train_cifar10.py, which is Rice et al.'s loop with AWP:
  the model is in train mode throughout, so every forward updates BatchNorm statistics: the
  PGD forwards, the loss forward that scores the restart, the training forward on x', and the
  clean forward after the step that measures train accuracy (13 for PGD-10).
* :func:`trades_awp_step`: Wu et al.'s trades_AWP/train_trades_cifar.py: the attack in eval mode
  from the unclipped ``x + 0.001 N(0, 1)``, then train-mode forwards x', x, x.
* :func:`mart_awp_step`: Wang et al.'s MART loop (YisenWang/MART, ``mart_loss`` in mart.py: a
  CE attack in eval mode from the unclipped ``x + 0.001 N(0, 1)``, then train-mode forwards x,
  x') with AWP added the way the AWP authors add it to TRADES (a proxy in train mode ascends
  the method's own loss). Wu et al. released no MART-AWP or RST-AWP script (their README: code
  for AT-AWP and TRADES-AWP only); this is the composition their TRADES-AWP script defines.
* :func:`rst_awp_step`: Carmon et al.'s RST loop (yaircarmon/semisup-adv, ``trades_loss`` in
  losses.py, read from a copy of it): TRADES' attack, then train-mode forwards x', x (one
  forward of x serves the CE and the KL target), with AWP composed the same way.

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


def kl_attack(model, x, eps, alpha, steps, gen):
    """TRADES' attack (and RST's): eval mode, from the unclipped x + 0.001 N(0, 1), sign steps
    on the summed KL of f(x') from f(x)."""
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
    return x_adv


def trades_awp_step(model, optimizer, x, y, eps, alpha, steps, beta, gamma, gen, awp_on=True):
    x_adv = kl_attack(model, x, eps, alpha, steps, gen)
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


def mart_loss_reference(model, x, x_adv, y, beta):
    """mart.py's loss after the attack: forwards x then x'; the boosted CE of x' plus beta
    times the KL of x' from x weighted by 1 - f_y(x), summed and divided by the batch size."""
    logits = model(x)
    logits_adv = model(x_adv)
    adv_probs = F.softmax(logits_adv, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(
        torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits, dim=1)
    true_probs = torch.gather(nat_probs, 1, y.unsqueeze(1).long()).squeeze()
    kl = torch.sum(nat_probs * (torch.log(nat_probs + 1e-12) - torch.log(adv_probs + 1e-12)),
                   dim=1)
    return loss_adv + float(beta) * torch.sum(kl * (1.0000001 - true_probs)) / len(x)


def mart_awp_step(model, optimizer, x, y, eps, alpha, steps, beta, gamma, gen, awp_on=True):
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, generator=gen, dtype=x.dtype)  # unclipped
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_ce = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss_ce, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    scaled = {}
    if awp_on:  # as TradesAWP.calc_awp: the proxy ascends the method's loss, in train mode
        diff = awp_diff(model, lambda m: mart_loss_reference(m, x, x_adv, y, beta), gamma)
        scaled = {k: gamma * v for k, v in diff.items()}
        add_into_weights(model, scaled, 1.0)
    optimizer.zero_grad()
    loss = mart_loss_reference(model, x, x_adv, y, beta)             # BN: x, x'
    loss.backward()
    optimizer.step()
    if awp_on:
        add_into_weights(model, scaled, -1.0)


def rst_loss_reference(model, x, x_adv, y, beta):
    """semisup-adv's trades_loss after the attack: forwards x' then x; CE of x plus beta times
    the summed KL of f(x') from f(x) over the batch size."""
    log_probs_adv = F.log_softmax(model(x_adv), dim=1)
    logits = model(x)
    kl = F.kl_div(log_probs_adv, F.softmax(logits, dim=1), reduction="sum") / len(x)
    return F.cross_entropy(logits, y, ignore_index=-1) + beta * kl


def rst_awp_step(model, optimizer, x, y, eps, alpha, steps, beta, gamma, gen, awp_on=True):
    x_adv = kl_attack(model, x, eps, alpha, steps, gen)
    model.train()
    scaled = {}
    if awp_on:
        diff = awp_diff(model, lambda m: rst_loss_reference(m, x, x_adv, y, beta), gamma)
        scaled = {k: gamma * v for k, v in diff.items()}
        add_into_weights(model, scaled, 1.0)
    optimizer.zero_grad()
    loss = rst_loss_reference(model, x, x_adv, y, beta)              # BN: x', x
    loss.backward()
    optimizer.step()
    if awp_on:
        add_into_weights(model, scaled, -1.0)
