"""Gradient-masking sanity checks (Athalye et al. 2018; Carlini et al. 2019, arXiv 1902.06705).

Each check returns ``{"name", "status": "pass" | "warn" | "skipped", "detail"}``;
:data:`EXPLANATIONS` says in one sentence what a warning means (``eval.md`` prints it), and
``docs/checks.md`` says more and what to do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import PGD, AutoAttack, Threat, autoattack_available
from ..perturb import model_mode

TOLERANCE = 0.01  # accuracy may fluctuate by this much between attack settings

EXPLANATIONS = {
    "steps": "more PGD steps left the model more accurate: the attack does not converge "
             "(flat or noisy loss surface); try cw50, restarts, AutoAttack",
    "eps": "accuracy rose with a larger eps, which contains the smaller ball: gradient masking "
           "or a too-large fixed step",
    "unbounded": "an unbounded attack must reach ~0%; if not, gradients lead nowhere "
                 "(obfuscated gradients): use BPDA or a black-box attack",
    "gradients": "input gradients are NaN or exactly zero for many inputs (non-differentiable "
                 "layers or a saturated softmax): use cw20 and AutoAttack",
    "deterministic": "eval-mode forwards differ: a randomised model needs EOT attacks",
    "black-box": "black-box Square broke examples every white-box attack failed on: the "
                 "white-box gradients are misleading",
}


@torch.no_grad()
def _acc(model, x, y, attack, seed=0):
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    correct = 0
    for start in range(0, len(y), 256):
        xb, yb = x[start:start + 256].to(device), y[start:start + 256].to(device)
        if attack is not None:
            xb = attack(model, xb, yb, gen)
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / max(len(y), 1)


def _result(name, ok, detail, skipped=False):
    return {"name": name, "status": "skipped" if skipped else ("pass" if ok else "warn"),
            "detail": detail}


def check_steps(model, x, y, t: Threat):
    a10 = _acc(model, x, y, PGD(t.norm, t.eps, t.step_size, 10))
    a50 = _acc(model, x, y, PGD(t.norm, t.eps, t.step_size, 50))
    return _result("steps", a50 <= a10 + TOLERANCE,
                   f"PGD-10 {100 * a10:.2f}%, PGD-50 {100 * a50:.2f}% (more steps must not help "
                   f"the model)")


def check_eps(model, x, y, t: Threat):
    accs = [_acc(model, x, y, PGD(t.norm, f * t.eps, f * t.step_size, 20))
            for f in (0.5, 1.0, 2.0)]
    ok = all(b <= a + TOLERANCE for a, b in zip(accs, accs[1:]))
    return _result("eps", ok, "PGD-20 at eps x0.5, x1, x2: "
                   + ", ".join(f"{100 * a:.2f}%" for a in accs) + " (must not rise)")


def check_unbounded(model, x, y, norm):
    big = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
    acc = _acc(model, x, y, PGD(norm, big, big / 10, 50, loss="margin"))
    return _result("unbounded", acc <= TOLERANCE,
                   f"PGD-50 at eps {big:.3g} (unbounded): {100 * acc:.2f}% (must reach ~0%)")


def check_gradients(model, x, y):
    device = next(model.parameters()).device
    xg = x[:256].to(device).requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg), y[:256].to(device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    norms = grad.flatten(1).norm(dim=1)
    nan = bool(torch.isnan(grad).any())
    zero = (norms == 0).float().mean().item()
    return _result("gradients", not nan and zero <= 0.05,
                   f"input gradients: {100 * zero:.1f}% exactly zero, NaN: {'yes' if nan else 'no'}")


def check_deterministic(model, x):
    device = next(model.parameters()).device
    xb = x[:256].to(device)
    with torch.no_grad():
        same = torch.equal(model(xb), model(xb))
    return _result("deterministic", same, "two eval-mode forwards of one batch "
                   + ("agree" if same else "differ (randomised model: use EOT attacks)"))


def check_black_box(model, x, y, norm, eps, white_box_robust: torch.Tensor, limit: int = 200,
                    queries: int = 1000):
    if not autoattack_available():
        return _result("black-box", True, "needs the autoattack extra", skipped=True)
    idx = white_box_robust.nonzero().flatten()[:limit]
    if len(idx) == 0:
        return _result("black-box", True, "no example survives the white-box attacks")
    square = AutoAttack(norm, eps, version="custom", attacks=["square"], square_queries=queries)
    acc = _acc(model, x[idx], y[idx], square)
    broken = (1 - acc) * len(idx) / len(white_box_robust)
    return _result("black-box", broken <= 0.005,
                   f"Square ({queries} queries) breaks {100 * broken:.2f}% of all examples that "
                   f"every white-box attack failed on (must be ~0%)")


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                  white_box_robust: torch.Tensor, max_examples: int = 500) -> list[dict]:
    """Run every check on (up to ``max_examples`` of) ``x, y``, in eval mode (the model's
    modes are restored afterwards)."""
    x, y = x[:max_examples], y[:max_examples]
    with model_mode(model, "eval"):
        return [
            check_steps(model, x, y, threat),
            check_eps(model, x, y, threat),
            check_unbounded(model, x, y, threat.norm),
            check_gradients(model, x, y),
            check_deterministic(model, x),
            check_black_box(model, x, y, threat.norm, threat.eps,
                            white_box_robust[:max_examples]),
        ]
