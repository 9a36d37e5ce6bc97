"""An independent AWP step written the authors' way (Wu et al.'s released code): a deep-copied
proxy model, one SGD step on the negated adversarial loss, the per-tensor difference rescaled to
gamma * ||w_l||, added to the model, the optimizer stepped at w + v, v subtracted again.

It exists only to be compared with torchawp.AWP, which must give the same weights without the
copy. Written from the paper's algorithm, not from torchawp's code.
"""

import copy
from collections import OrderedDict

import torch

EPS = 1e-20


def awp_diff(model, proxy_loss_fn, gamma, proxy_lr=0.01):
    proxy = copy.deepcopy(model)
    proxy.train()
    proxy_opt = torch.optim.SGD(proxy.parameters(), lr=proxy_lr)
    loss = -proxy_loss_fn(proxy)
    proxy_opt.zero_grad()
    loss.backward()
    proxy_opt.step()
    diff = OrderedDict()
    old = model.state_dict()
    new = proxy.state_dict()
    for (name, old_w), (_, new_w) in zip(old.items(), new.items()):
        if len(old_w.size()) <= 1:
            continue
        if "weight" in name:
            d = new_w - old_w
            diff[name] = old_w.norm() / (d.norm() + EPS) * d
    return diff


def add_into_weights(model, diff, coeff):
    names_in_diff = diff.keys()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in names_in_diff:
                param.add_(coeff * diff[name])


def reference_awp_step(model, optimizer, proxy_loss_fn, train_loss_fn, gamma):
    """One AT-AWP step; returns the perturbation that was applied (name -> tensor)."""
    diff = awp_diff(model, proxy_loss_fn, gamma)
    scaled = {k: gamma * v for k, v in diff.items()}
    add_into_weights(model, scaled, 1.0)
    model.train()
    loss = train_loss_fn(model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    add_into_weights(model, scaled, -1.0)
    return scaled
