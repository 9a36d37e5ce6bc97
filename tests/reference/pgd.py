"""A plain L-inf PGD written from Madry et al.'s description, to check torchawp's PGD against."""

import torch
import torch.nn.functional as F


def reference_pgd_linf(model, x, y, eps, alpha, steps, start):
    """``start`` is the initial perturbation (so both implementations can share it)."""
    x_adv = torch.clamp(x + start, 0, 1).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss, x_adv)[0]
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1).detach()
    return x_adv
