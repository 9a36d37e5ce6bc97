"""An independent transcription of davda54/sam's two steps (MIT; ``SAM.first_step`` /
``second_step``), written from reading it, to compare torchawp's SAM and ASAM with: the user's
backward fills ``.grad`` at ``w``; the first step saves ``w`` and climbs by
``e = rho * (w^2 if adaptive) * g / (|| (|w| if adaptive) * g || + 1e-12)`` over every
parameter with a gradient; after a second backward at ``w + e`` the second step copies ``w``
back and lets the base optimizer step there."""

import torch


class ReferenceSAM:
    def __init__(self, params, base_optimizer: torch.optim.Optimizer, rho: float,
                 adaptive: bool = False):
        self.params, self.base, self.rho, self.adaptive = list(params), base_optimizer, rho, adaptive
        self.saved = {}

    @torch.no_grad()
    def first_step(self):
        with_grad = [p for p in self.params if p.grad is not None]
        norm = torch.norm(torch.stack([((p.abs() if self.adaptive else 1.0) * p.grad).norm(2)
                                       for p in with_grad]), 2)
        scale = self.rho / (norm + 1e-12)
        for p in with_grad:
            self.saved[p] = p.detach().clone()
            p.add_((p.pow(2) if self.adaptive else 1.0) * p.grad * scale)

    @torch.no_grad()
    def second_step(self):
        for p, w in self.saved.items():
            p.copy_(w)
        self.saved.clear()
        self.base.step()
