"""What the benchmark scripts share."""

from __future__ import annotations

import statistics

from torchawp.perturbations import WeightPerturbation


def paired(numerators: list[float], denominators: list[float], digits: int = 2) -> str:
    """Median of the per-round ratios (each from adjacent runs, so drift in machine speed
    cancels) with their range."""
    r = sorted(n / d for n, d in zip(numerators, denominators))
    return (f"{statistics.median(r):.{digits}f} (median of {len(r)} paired rounds, "
            f"{r[0]:.{digits}f} to {r[-1]:.{digits}f})")


def timed_awp_part(trainer, awp, x, y, n: int) -> float:
    """Seconds for the AWP part of a step alone, at fixed adversarial inputs: the ascent pass,
    adding ``v`` and subtracting it again (``awp``: ``torchawp.AWP`` or :class:`ProxyAWP`).
    This is where the two implementations differ; the attack and the training pass around it
    are the same code for both."""
    import time

    import torch

    method = trainer.method
    x_adv = method.craft(trainer.net, x, y, trainer.attack_gen)
    ascent_loss = lambda net: trainer.scaler.scale(  # noqa: E731
        method.ascent_loss(net, x, x_adv, y))
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        with awp.perturbed(ascent_loss):
            pass
    sync()
    return (time.perf_counter() - start) / n


class ProxyAWP(WeightPerturbation):
    """The authors' AWP (Wu et al.'s released code), for side-by-side comparisons: a proxy copy
    of the model receives the weights every step, takes one SGD step on the negated adversarial
    loss, and the per-tensor difference rescaled to gamma * ||w_l|| is added to the model's
    conv/linear weights; the caller steps its optimizer at w + v; v is subtracted afterwards.

    A ``torchawp`` weight perturbation where the trainer uses it (``perturbed``)."""

    name = "awp-proxy"

    def __init__(self, model, gamma: float = 0.01, proxy_lr: float = 0.01):
        import copy

        import torch

        super().__init__(model)
        self.gamma = gamma
        self.proxy = copy.deepcopy(model)
        self.proxy_opt = torch.optim.SGD(self.proxy.parameters(), lr=proxy_lr)
        self.names = [n for n, p in model.named_parameters() if p.dim() > 1 and "weight" in n]

    def perturbed(self, closure, active: bool = True, grads=None):  # grads: unused here
        import contextlib

        import torch

        @contextlib.contextmanager
        def block():
            if not active:
                yield
                return
            self.proxy.load_state_dict(self.model.state_dict())
            self.proxy.train()
            self.proxy_opt.zero_grad()
            (-closure(self.proxy)).backward()
            self.proxy_opt.step()
            weights = dict(self.model.named_parameters())
            moved = dict(self.proxy.named_parameters())
            diff = {}
            for n in self.names:
                d = moved[n].detach() - weights[n].detach()
                diff[n] = self.gamma * weights[n].detach().norm() / (d.norm() + 1e-20) * d
            with torch.no_grad():
                for n in self.names:
                    weights[n].add_(diff[n])
            try:
                yield
            finally:
                with torch.no_grad():
                    for n in self.names:
                        weights[n].sub_(diff[n])

        return block()
