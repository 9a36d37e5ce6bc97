"""What every input-space attack shares: threat models and the mode/gradient chores.

All attacks work in [0, 1] pixel space (models normalise inside), are configured once and called
as ``attack(model, x, y)``, compute gradients for the input only (parameter ``.grad`` fields are
neither computed nor touched), and restore the model's train/eval mode afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..perturb import model_mode


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


@dataclass(frozen=True)
class Threat:
    """A threat model as a value: ``norm`` (``"linf"`` or ``"l2"``), radius ``eps`` and the PGD
    ``step_size``, both in [0, 1] pixel units (CIFAR L-inf: 8/255 and 2/255)."""

    norm: str = "linf"
    eps: float = 8 / 255
    step_size: float = 2 / 255

    def scaled(self, eps: float) -> "Threat":
        """The same threat model at radius ``eps``, the step scaled in proportion."""
        factor = eps / self.eps if self.eps else 1.0
        return replace(self, eps=eps, step_size=self.step_size * factor)


class ThreatModel:
    """An input ball: ``random_start``, ``step`` and ``project`` (Madry-lab style), so one PGD
    loop serves every norm."""

    def __init__(self, eps: float):
        self.eps = float(eps)

    def random_start(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        raise NotImplementedError

    def step(self, delta: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        raise NotImplementedError

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LinfBall(ThreatModel):
    """``||delta||_inf <= eps``: sign-gradient steps, clamping projection."""

    def random_start(self, x, generator=None):
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * self.eps

    def step(self, delta, grad, step_size):
        return delta + step_size * grad.sign()

    def project(self, delta):
        return delta.clamp(-self.eps, self.eps)


class L2Ball(ThreatModel):
    """``||delta||_2 <= eps`` per example: normalised-gradient steps, radial projection."""

    def random_start(self, x, generator=None):
        # Rice et al.'s start: a Gaussian direction at a uniform random fraction of eps.
        g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        r = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=generator,
                       device=x.device, dtype=x.dtype)
        return g / _per_example_norm(g) * r * self.eps

    def step(self, delta, grad, step_size):
        return delta + step_size * grad / _per_example_norm(grad)

    def project(self, delta):
        return delta * torch.clamp(self.eps / _per_example_norm(delta), max=1.0)


class Unbounded(ThreatModel):
    """No ball (``eps=None``): the norm's steps, no projection; only [0, 1] bounds the image
    (the regional attack of Ozbulak et al.)."""

    def __init__(self, norm: str):
        self.eps = None
        self.steps_like = LinfBall(0.0) if norm == "linf" else L2Ball(0.0)

    def random_start(self, x, generator=None):
        raise ValueError("an attack without a ball (eps=None) has no random start")

    def step(self, delta, grad, step_size):
        return self.steps_like.step(delta, grad, step_size)

    def project(self, delta):
        return delta


def threat_model(norm: str, eps: float | None) -> ThreatModel:
    """``"linf"`` or ``"l2"`` ball of radius ``eps`` (pixel units); ``eps=None``: no ball."""
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2' (got {norm!r})")
    if eps is None:
        return Unbounded(norm)
    return LinfBall(eps) if norm == "linf" else L2Ball(eps)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example CW margin ``max_{k != y} z_k - z_y`` (positive = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.amax(dim=1) - true


def attack_loss(kind: str, logits: torch.Tensor, y: torch.Tensor,
                clean_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example loss an attack ascends: ``ce``, ``margin`` (CW-inf) or ``kl`` (TRADES:
    ``KL(f(x) || f(x'))`` against the clean prediction ``clean_probs``)."""
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if kind == "margin":
        return margin_loss(logits, y)
    if kind == "kl":
        return F.kl_div(F.log_softmax(logits, dim=1), clean_probs, reduction="none").sum(1)
    raise ValueError(f"attack loss must be ce, margin or kl (got {kind!r})")


class Attack:
    """Base class: holds the threat model and the model mode used while crafting.

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: radius in [0, 1] pixel units (None: no ball, only the [0, 1] box).
        bn_mode: ``"eval"`` (default), ``"train"`` (batch statistics, as in Rice et al.'s
            training attack, running statistics left untouched) or ``"train-update"`` (train
            mode whose every forward updates the running statistics, as the authors' AT loop
            does; the only mode in which an attack changes the model).
    """

    def __init__(self, norm: str = "linf", eps: float = 8 / 255, bn_mode: str = "eval"):
        if bn_mode not in ("train", "eval", "train-update"):
            raise ValueError(f"bn_mode must be 'train', 'eval' or 'train-update' (got "
                             f"{bn_mode!r})")
        self.norm = norm
        self.eps = None if eps is None else float(eps)
        self.ball = threat_model(norm, eps)
        self.bn_mode = bn_mode

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None,
                 only: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``: same shape, in the ball, in [0, 1], detached.

        ``only`` (bool per example) attacks those examples and returns the others unchanged,
        drawing the random numbers the whole batch would draw, so each attacked example gets
        the random start it gets in a full-batch call (the evaluation cascade relies on it).
        """
        kwargs = {} if only is None else {"only": only.to(x.device)}
        with model_mode(model, self.bn_mode), torch.enable_grad():
            x_adv = self.perturb(model, x.detach(), y, generator, **kwargs)
        return x_adv.detach()

    def perturb(self, model, x, y, generator=None, only=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "ball")
        return f"{type(self).__name__}({args})"
