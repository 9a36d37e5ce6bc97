"""An independent transcription of the AWP class copied across Kaggle NLP solutions (the
"practitioners' AWP"), written from reading it: after the normal backward at w, it backs up
each selected tensor and its box [w - eps|w|, w + eps|w|]; each of adv_step times it adds
r = adv_lr * grad / (||grad|| + 1e-6) * (||param|| + 1e-6) and clamps into the box, then zeroes
the gradients and backpropagates the loss at the perturbed weights; finally it copies the
backup back, and the optimizer steps with that last gradient."""

import torch


class ReferencePractitionersAWP:
    def __init__(self, model, optimizer, adv_lr, adv_eps, adv_step, param_name="weight"):
        self.model, self.optimizer = model, optimizer
        self.adv_lr, self.adv_eps, self.adv_step, self.param_name = adv_lr, adv_eps, adv_step, \
            param_name

    def _selected(self):
        return [(n, p) for n, p in self.model.named_parameters()
                if p.requires_grad and p.grad is not None and self.param_name in n]

    def attack_backward(self, loss_fn):
        backup, box = {}, {}
        with torch.no_grad():
            for n, p in self._selected():
                backup[n] = p.detach().clone()
                bound = self.adv_eps * p.detach().abs()
                box[n] = (p.detach() - bound, p.detach() + bound)
        for _ in range(self.adv_step):
            with torch.no_grad():
                for n, p in self._selected():
                    g_norm, w_norm = torch.norm(p.grad), torch.norm(p.detach())
                    if g_norm != 0 and not torch.isnan(g_norm):
                        p.add_(self.adv_lr * p.grad / (g_norm + 1e-6) * (w_norm + 1e-6))
                        p.copy_(torch.min(torch.max(p, box[n][0]), box[n][1]))
            self.optimizer.zero_grad()
            loss_fn().backward()
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                if n in backup:
                    p.copy_(backup[n])
