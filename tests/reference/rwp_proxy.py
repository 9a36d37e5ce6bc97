"""An independent transcription of Yu et al.'s RWP (``AT_AWP_RWP/utils_rwp.py``,
``RobustWeightPerturb``), written from reading it, to compare torchawp's RWP with: two deep
copies of the model; each of the 10 iterations reloads both from the model, adds the current
scaled difference to both, takes one plain SGD step (lr 0.01) on the second on the negated mean
of the per-example cross-entropy kept where it is below the threshold, and adds the weight
difference of the dim > 1 "weight" tensors to a running sum, which is rescaled globally to the
model's weight norm. The model is perturbed by gamma times that, stepped, and restored."""

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F

EPS = 1e-20


def _selected(model):
    return [n for n, p in model.named_parameters() if p.dim() > 1 and "weight" in n]


def rwp_direction(model, x_adv, y, threshold, steps=10, proxy_lr=0.01):
    """The authors' ``calc_awp``: the globally rescaled sum (before the factor gamma)."""
    names = _selected(model)
    proxy_1, proxy_2 = copy.deepcopy(model), copy.deepcopy(model)
    opt = torch.optim.SGD(proxy_2.parameters(), lr=proxy_lr)
    total, scaled = OrderedDict(), OrderedDict()
    gamma = rwp_direction.gamma
    for _ in range(steps):
        proxy_1.load_state_dict(model.state_dict())
        proxy_2.load_state_dict(model.state_dict())
        for proxy in (proxy_1, proxy_2):
            with torch.no_grad():
                for n, p in proxy.named_parameters():
                    if n in scaled:
                        p.add_(gamma * scaled[n])
        proxy_2.train()
        losses = F.cross_entropy(proxy_2(x_adv), y, reduction="none")
        loss = -(losses * (losses < threshold).to(losses.dtype)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        before, after = dict(proxy_1.named_parameters()), dict(proxy_2.named_parameters())
        for n in names:
            step = (after[n] - before[n]).detach()
            total[n] = step if n not in total else total[n] + step
        params = dict(model.named_parameters())
        w_norm = torch.cat([params[n].detach().view(-1) for n in names]).norm()
        d_norm = torch.cat([total[n].view(-1) for n in names]).norm()
        scaled = OrderedDict((n, w_norm / (d_norm + EPS) * total[n]) for n in names)
    return scaled


def add(model, diff, coeff):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in diff:
                p.add_(coeff * diff[n])
